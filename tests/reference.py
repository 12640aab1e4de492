"""An independent reference: a plain GradientTape training loop, and the
heatmap view and its blocks written from docs/STATISTICS.md.

It trains a clone of a model with the same SGD rule and batches that `fit`
uses (no shuffling) and keeps every step's gradient, so the tests can
recompute each statistic from scratch with numpy.
"""

import keras
import numpy as np
import tensorflow as tf


def clone_with_weights(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def tape_training(model, loss_fn, x, y, batch_size, epochs, learning_rate,
                  clip_norm=None, loss_scale=None):
    """Returns step_grads[epoch][step][variable] (float64 numpy arrays).

    ``loss_scale``: differentiate the loss times this factor and divide the
    gradients by it, as Keras's `LossScaleOptimizer` does under mixed
    precision (the caller keeps to steps whose gradients stay finite).
    """
    variables = model.trainable_variables
    history = []
    for _ in range(epochs):
        epoch_grads = []
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]
            yb = y[start:start + batch_size]
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(loss_fn(yb, model(xb, training=True)))
                if loss_scale is not None:
                    loss = loss * loss_scale
            grads = tape.gradient(loss, variables)
            grads = [tf.convert_to_tensor(g) for g in grads]
            if loss_scale is not None:
                grads = [g / loss_scale for g in grads]
            if clip_norm is not None:  # Keras's clipnorm: per variable
                grads = [tf.clip_by_norm(g, clip_norm) for g in grads]
            for g, v in zip(grads, variables):
                v.assign_sub(learning_rate * g)
            epoch_grads.append([g.numpy().astype(np.float64) for g in grads])
        history.append(epoch_grads)
    return history


def probe_gradient(model, loss_fn, x, y):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(loss_fn(y, model(x, training=False)))
    return [tf.convert_to_tensor(g).numpy().astype(np.float64)
            for g in tape.gradient(loss, model.trainable_variables)]


# -- the heatmap view and its blocks (docs/STATISTICS.md, Heatmaps) -------


def matrix_view(values):
    """docs/STATISTICS.md's matrix view: ``(n,)`` as ``(1, n)``, a kernel
    ``(..., out)`` as ``(prod(...), out)``."""
    values = np.asarray(values)
    return values.reshape(1, -1) if values.ndim == 1 else values.reshape(
        -1, values.shape[-1])


def pooled_blocks(values, block, reduce):
    """``reduce`` of each ``block = (rows, cols)`` of the matrix view, the
    last block of each axis holding what is left."""
    matrix = matrix_view(values)
    rows, cols = block
    return np.array([[reduce(matrix[i:i + rows, j:j + cols])
                      for j in range(0, matrix.shape[1], cols)]
                     for i in range(0, matrix.shape[0], rows)])
