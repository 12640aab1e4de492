"""Real logdirs for the plugin, server and browser tests.

Each function trains a small real Keras model with `GradientTensorBoard` and
returns the run directory. Data are generated, never downloaded.
"""

import os

import numpy as np


def _data(samples=128, features=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, features)).astype("float32")
    y = (x[:, 0] * x[:, 1] > 0).astype("int64")
    return x, y


def train_mlp_run(run_dir, epochs=3, source="both", activation="tanh",
                  layers=2, seed=0, **callback_kwargs):
    """A small MLP on a generated task; returns ``run_dir``."""
    import keras

    from tb_gradients import GradientTensorBoard

    keras.utils.set_random_seed(seed)
    x, y = _data(seed=seed)
    model = keras.Sequential(
        [keras.Input((x.shape[1],))]
        + [keras.layers.Dense(8, activation=activation, name=f"dense_{i}")
           for i in range(layers)]
        + [keras.layers.Dense(2, activation="softmax", name="output")])
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy())
    callback = GradientTensorBoard(
        log_dir=str(run_dir), source=source,
        probe_data=(x[:32], y[:32]) if source != "training" else None,
        **callback_kwargs)
    model.fit(x, y, batch_size=32, epochs=epochs, shuffle=False, verbose=0,
              callbacks=[callback])
    return run_dir


def train_nan_run(run_dir, epochs=3):
    """A run whose gradients become NaN/Inf (one sample of the data is NaN)."""
    import keras

    from tb_gradients import GradientTensorBoard

    keras.utils.set_random_seed(1)
    x, y = _data()
    x[5, 2] = np.nan
    model = keras.Sequential([
        keras.Input((x.shape[1],)),
        keras.layers.Dense(4, activation="relu", name="dense"),
        keras.layers.Dense(2, activation="softmax", name="output")])
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy())
    model.fit(x, y, batch_size=32, epochs=epochs, shuffle=False, verbose=0,
              callbacks=[GradientTensorBoard(log_dir=str(run_dir))])
    return run_dir


def standard_logdir(root):
    """Two comparable runs, a NaN run and a hostile run name."""
    root = str(root)
    train_mlp_run(os.path.join(root, "tanh"), activation="tanh", epochs=4)
    train_mlp_run(os.path.join(root, "relu"), activation="relu", epochs=4)
    train_nan_run(os.path.join(root, "exploding"))
    train_mlp_run(os.path.join(root, "<img src=x onerror=window.__pwned=1>"),
                  epochs=2, source="training")
    return root
