"""The same trainings on whichever Keras backend this process runs, for the
tests that compare the backends (tests/test_backends.py).

    KERAS_BACKEND=tensorflow|jax|torch python -m tests.backend_training OUT
        [--reference] [--saving]

The backend is fixed when Keras is imported, so each backend trains in its
own process. Every model gets its initial weights from a seeded numpy
generator (Keras's random initialisers differ per backend; the layers are
built with zero initialisers, which cost no random-number compilation on
JAX) and trains on generated data with ``shuffle=False``, so that both
backends apply the same gradients up to float round-off. The classifiers
have 3 classes: with 2, a softmax output layer's gradient is ``(a, -a)``
per row, an exact tie of ``max_abs_index`` that round-off decides. Each
scenario writes its logs to ``OUT/<scenario>``:

* ``mlp``: Dense layers, Adam with ``clipnorm`` (clipping active), windows
  of `MLP_WINDOW` steps spanning epochs, float32 heatmaps, sample-weighted
  probe batches of unequal sizes; inputs scaled by `MLP_INPUT_SCALE`, so
  that the first kernel's gradient (proportional to its input) vanishes;
* ``recurrent``: Masking and an LSTM, SGD, epoch windows: timestep
  gradients (masked timesteps included) and per-gate figures; inputs
  scaled by `RNN_INPUT_SCALE` (the LSTM's input kernel's gradient
  vanishes);
* ``mixed``: ``mixed_float16`` with a `LossScaleOptimizer` whose initial
  scale overflows float16, so that its first steps are skipped; a ReLU
  layer with `MIXED_DEAD_UNITS` dead units (`kill_units`);
* ``nonfinite``: a weight with a penalty (a regularisation loss) whose
  gradient becomes NaN at optimizer step `NAN_STEP` (and stays NaN), the
  other variables' staying finite;
* ``accumulation``: SGD with ``gradient_accumulation_steps`` =
  `ACCUMULATION_STEPS`: the recorded steps are the applied updates; a ReLU
  layer with `ACCUMULATION_DEAD_UNITS` dead units.

Every scenario records ``source="both"`` (training and probe gradients),
and each is built to show the callback's findings (`FINDINGS`).

On JAX, ``OUT/compiles.json`` counts the XLA compilations of each jitted
function (by name) during each scenario's `fit`.

``--reference`` (JAX) also trains a clone of the ``recurrent`` model with a
plain `jax.grad` loop over ``stateless_call`` and the same SGD rule, and
saves every step's gradient, the probe gradients and the weights at each
epoch's end to ``OUT/reference.npz``. ``--saving`` saves the ``mlp`` model
trained with the callback (``OUT/saving/with_callback.keras`` and
``.weights.h5``), reloads the ``.keras`` file, and trains the same model
without the callback (``OUT/saving/without_callback.*``);
``OUT/saving/arrays.npz`` holds the weights, optimizer variables and
predictions of the trained, reloaded and callback-free models.

Every backend also trains two models of the same variables' count and
pooled grids, one `WIDE_FACTOR` times the other's parameters
(`HOST_MODELS`), and writes to ``OUT/host_bytes.json`` the bytes the
window-end kernel moved to the host in each window (its ``host_bytes``,
counted at its one transfer point, `window.kernels.WindowKernel.to_host`).
"""

import argparse
import collections
import contextlib
import json
import logging
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tb_gradients import GradientTensorBoard  # noqa: E402

BATCH = 8
MLP_STEPS_PER_EPOCH, MLP_EPOCHS, MLP_WINDOW = 5, 3, 4
MLP_CLIPNORM = 0.05
# The first kernel's gradient is proportional to its input, the others'
# are not: 2.7 to 3.8 orders of magnitude below the output kernel's, in
# every window from the first (`findings`' threshold is 2).
MLP_INPUT_SCALE = 1e-4
RNN_TIMESTEPS, RNN_FEATURES, RNN_EPOCHS, RNN_STEPS_PER_EPOCH = 6, 3, 2, 3
RNN_LR = 0.05
RNN_PROBE = 8
# as MLP_INPUT_SCALE: the LSTM's input kernel 3.3 to 4 orders of magnitude
# below the head's kernel
RNN_INPUT_SCALE = 1e-3
MIXED_EPOCHS, MIXED_STEPS_PER_EPOCH = 2, 4
MIXED_INITIAL_SCALE = 2.0 ** 18
MIXED_DEAD_UNITS = 4  # of 8: 50 %, a dead_units warning
NAN_EPOCHS, NAN_STEPS_PER_EPOCH, NAN_LR = 3, 3, 0.1
# `NanGate`'s weight starts at NAN_START and its penalty's gradient (about 1)
# moves it by about NAN_LR per step: it is about -0.05 at step NAN_STEP.
NAN_START = 0.45
NAN_STEP = 5
ACCUMULATION_STEPS, ACCUMULATION_EPOCHS = 2, 2
ACCUMULATION_STEPS_PER_EPOCH = 6  # micro-steps: 3 updates per epoch
ACCUMULATION_DEAD_UNITS = 3  # of 6: 50 %, a dead_units warning
# Far below the pre-activations' range (|x·w| stays under 5 on this data).
DEAD_BIAS = -10.0
SCENARIOS = ("mlp", "recurrent", "mixed", "nonfinite", "accumulation")
# The findings each scenario's recording holds, (severity, kind, variable),
# each once per source (docs/FINDINGS.md). None shows `exploding`: it needs
# a step 100 times its window's median step, or the step norm growing by 2
# orders of magnitude; the mlp's clipping caps every step, and in the SGD
# scenarios (whose data repeat every epoch) such steps throw the weights
# into saturated activations, where the backends' round-off no longer
# compares. None shows `cancellation` either: it needs 5 records in a row
# after the first (whose dissolving norm is 0), more than any trains.
FINDINGS = {
    "mlp": {("warning", "vanishing", "hidden/kernel")},
    "recurrent": {("warning", "vanishing", "rec/lstm_cell/kernel")},
    "mixed": {("warning", "dead_units", "hidden/kernel")},
    "nonfinite": {("error", "nonfinite", "gate/w")},
    "accumulation": {("warning", "dead_units", "hidden/kernel")},
}
ZEROS = {"kernel_initializer": "zeros", "bias_initializer": "zeros"}
# (inputs, hidden units) of the two models whose host transfers are
# compared: Dense kernels (32, 64) and (64, 64) against (256, 512) and
# (512, 64), biases (64,) against (512,): with `HOST_HEATMAP_CELLS` cells
# every variable's pooled grid is the same (8 x 8 or 1 x 64), and the
# wide model has 26 times the parameters.
HOST_MODELS = {"narrow": (32, 64), "wide": (256, 512)}
HOST_HEATMAP_CELLS = 64
HOST_EPOCHS, HOST_STEPS_PER_EPOCH = 3, 2


def dense(units, name, **kwargs):
    return keras.layers.Dense(units, name=name, **ZEROS, **kwargs)


def seeded_weights(model, seed):
    """Sets every weight from a seeded numpy generator (the same values on
    every backend)."""
    rng = np.random.default_rng(seed)
    model.set_weights([
        (rng.normal(size=w.shape) * 0.4).astype(w.dtype)
        for w in model.get_weights()])


def kill_units(layer, units):
    """Sets the bias of a ReLU layer's first ``units`` units to DEAD_BIAS:
    their pre-activation is negative for every sample, so their gradient
    (kernel column and bias) is exactly 0 and they never move."""
    bias = np.array(layer.bias.numpy(), "float32")
    bias[:units] = DEAD_BIAS
    layer.bias.assign(bias)


# -- mlp ----------------------------------------------------------------------


def mlp_data():
    rng = np.random.default_rng(21)
    x = rng.normal(size=(MLP_STEPS_PER_EPOCH * BATCH, 6)).astype("float32")
    y = ((x[:, 0] + x[:, 1] * x[:, 2] > 0).astype("int64")
         + (x[:, 3] > 0.8).astype("int64"))
    return (x * MLP_INPUT_SCALE).astype("float32"), y


def mlp_model():
    model = keras.Sequential([
        keras.Input((6,)),
        dense(7, "hidden", activation="tanh"),
        dense(5, "middle", activation="tanh"),
        dense(3, "out", activation="softmax"),
    ], name="mlp")
    seeded_weights(model, 1)
    model.compile(keras.optimizers.Adam(0.02, clipnorm=MLP_CLIPNORM),
                  keras.losses.SparseCategoricalCrossentropy())
    return model


def train_mlp(out):
    x, y = mlp_data()
    model = mlp_model()
    # sample-weighted probe batches of unequal sizes (6, 6, 4)
    weights = np.linspace(0.5, 1.5, 16).astype("float32")
    model.fit(x, y, batch_size=BATCH, epochs=MLP_EPOCHS, shuffle=False,
              verbose=0, callbacks=[GradientTensorBoard(
                  os.path.join(out, "mlp"), source="both",
                  probe_data=(x[:16], y[:16], weights), probe_batch_size=6,
                  gradient_window=MLP_WINDOW, heatmap_encoding="float32",
                  histogram_buckets=5)])
    return model


# -- recurrent ----------------------------------------------------------------


def recurrent_data():
    rng = np.random.default_rng(22)
    x = rng.normal(size=(RNN_STEPS_PER_EPOCH * BATCH, RNN_TIMESTEPS,
                         RNN_FEATURES)).astype("float32")
    y = (x[:, 0, :1] * 0.5 - x[:, -1, 1:2] * 0.3).astype("float32")
    # masked timesteps (all-zero) in two samples, probe samples among them
    x[0, 4:] = 0.0
    x[1, 2:] = 0.0
    return (x * RNN_INPUT_SCALE).astype("float32"), y


def recurrent_model():
    model = keras.Sequential([
        keras.Input((RNN_TIMESTEPS, RNN_FEATURES)),
        keras.layers.Masking(0.0, name="mask"),
        keras.layers.LSTM(4, return_sequences=True, name="rec",
                          recurrent_initializer="zeros", **ZEROS),
        keras.layers.GlobalAveragePooling1D(name="pool"),
        dense(1, "head"),
    ], name="recurrent")
    seeded_weights(model, 2)
    return model


def train_recurrent(out):
    x, y = recurrent_data()
    model = recurrent_model()
    initial = model.get_weights()
    model.compile(keras.optimizers.SGD(RNN_LR), "mse")
    model.fit(x, y, batch_size=BATCH, epochs=RNN_EPOCHS, shuffle=False,
              verbose=0, callbacks=[GradientTensorBoard(
                  os.path.join(out, "recurrent"), source="both",
                  probe_data=(x[:RNN_PROBE], y[:RNN_PROBE]),
                  timestep_samples=RNN_PROBE)])
    return initial


# -- mixed precision ----------------------------------------------------------


def train_mixed(out):
    rng = np.random.default_rng(23)
    x = rng.normal(size=(MIXED_STEPS_PER_EPOCH * BATCH, 6)).astype("float32")
    y = (x[:, 0] - x[:, 4] > 0).astype("int64") + (x[:, 1] > 0.5)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential([
            keras.Input((6,)),
            dense(8, "hidden", activation="relu"),
            dense(3, "logits"),
            keras.layers.Activation("softmax", dtype="float32", name="out"),
        ], name="mixed")
        seeded_weights(model, 3)
        kill_units(model.get_layer("hidden"), MIXED_DEAD_UNITS)
        optimizer = keras.optimizers.LossScaleOptimizer(
            keras.optimizers.SGD(0.1), initial_scale=MIXED_INITIAL_SCALE)
        model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy())
        model.fit(x, y, batch_size=BATCH, epochs=MIXED_EPOCHS, shuffle=False,
                  verbose=0, callbacks=[GradientTensorBoard(
                      os.path.join(out, "mixed"), source="both",
                      probe_data=(x[:16], y[:16]), heatmap_cells=16)])
    finally:
        keras.mixed_precision.set_global_policy("float32")


# -- gradient accumulation ----------------------------------------------------


def train_accumulation(out):
    rng = np.random.default_rng(29)
    x = rng.normal(size=(ACCUMULATION_STEPS_PER_EPOCH * BATCH, 5)).astype(
        "float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 3] > 0.5)
    model = keras.Sequential([keras.Input((5,)),
                              dense(6, "hidden", activation="relu"),
                              dense(3, "out", activation="softmax")],
                             name="accumulation")
    seeded_weights(model, 4)
    kill_units(model.get_layer("hidden"), ACCUMULATION_DEAD_UNITS)
    model.compile(keras.optimizers.SGD(
        0.2, gradient_accumulation_steps=ACCUMULATION_STEPS),
        keras.losses.SparseCategoricalCrossentropy())
    model.fit(x, y, batch_size=BATCH, epochs=ACCUMULATION_EPOCHS,
              shuffle=False, verbose=0, callbacks=[GradientTensorBoard(
                  os.path.join(out, "accumulation"), source="both",
                  probe_data=(x[:16], y[:16]), heatmap_cells=16)])


# -- non-finite gradient ------------------------------------------------------


def nan_penalty(w):
    """``w + 0.001·sqrt(w)``: gradient ``1 + 0.0005/sqrt(w)``, about 1 while
    ``w > 0``, NaN once ``w < 0`` (and from then on, w being NaN)."""
    return keras.ops.sum(w) + 1e-3 * keras.ops.sum(keras.ops.sqrt(w))


class NanGate(keras.layers.Layer):
    """Passes its input through; owns a weight whose only gradient is its
    penalty's (`nan_penalty`).

    SGD walks the weight down by about NAN_LR per step, from NAN_START to
    about -0.05 at step NAN_STEP, where its gradient becomes NaN. The loss
    holds the penalty, so the other variables' gradients stay finite. (The
    weight is in no layer's output: a product with 0 would make the backends
    differ, TensorFlow's graph optimiser folding ``x · 0`` to 0 where JAX
    keeps ``NaN · 0 = NaN``.)
    """

    def build(self, input_shape):
        self.w = self.add_weight(
            shape=(1,), name="w",
            initializer=keras.initializers.Constant(NAN_START),
            regularizer=nan_penalty)

    def call(self, x):
        return x


def train_nonfinite(out):
    rng = np.random.default_rng(24)
    x = rng.normal(size=(NAN_STEPS_PER_EPOCH * BATCH, 6)).astype("float32")
    y = (x[:, 0] * x[:, 1] > 0).astype("int64") + (x[:, 2] > 0.5)
    model = keras.Sequential([
        keras.Input((6,)),
        NanGate(name="gate"),
        dense(4, "hidden", activation="tanh"),
        dense(3, "out", activation="softmax"),
    ], name="nonfinite")
    seeded_weights(model, 4)
    model.get_layer("gate").w.assign(np.array([NAN_START], "float32"))
    model.compile(keras.optimizers.SGD(NAN_LR),
                  keras.losses.SparseCategoricalCrossentropy())
    model.fit(x, y, batch_size=BATCH, epochs=NAN_EPOCHS, shuffle=False,
              verbose=0, callbacks=[GradientTensorBoard(
                  os.path.join(out, "nonfinite"), source="both",
                  probe_data=(x[:16], y[:16]), heatmap_cells=16)])


# -- JAX only: compilations, an independent reference, saving -----------------


class CompileCounter(logging.Handler):
    """Counts JAX's "Compiling <name>" log records (``jax_log_compiles``)."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def emit(self, record):
        match = re.match(r"Compiling (\S+)", record.getMessage())
        if match:
            self.counts[match.group(1)] += 1


@contextlib.contextmanager
def counting_compiles(counts, name):
    """Counts the compilations inside the block into ``counts[name]``."""
    if keras.backend.backend() != "jax":
        yield
        return
    import jax

    logger = logging.getLogger("jax")
    handler = CompileCounter()
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    jax.config.update("jax_log_compiles", True)
    try:
        yield
    finally:
        jax.config.update("jax_log_compiles", False)
        logger.propagate = propagate
        logger.removeHandler(handler)
        counts[name] = dict(handler.counts)


def jax_reference(path, initial):
    """Trains a clone of the recurrent model with `jax.grad` of its
    stateless call and a hand-written mean squared error, SGD by hand."""
    import jax
    import jax.numpy as jnp

    x, y = recurrent_data()
    clone = recurrent_model()
    clone.set_weights(initial)
    trainable = [jnp.asarray(v.value) for v in clone.trainable_variables]
    non_trainable = [jnp.asarray(v.value)
                     for v in clone.non_trainable_variables]

    def loss(trainable, x, y, training):
        prediction, _ = clone.stateless_call(trainable, non_trainable, x,
                                             training=training)
        return jnp.mean(jnp.square(prediction - y))

    step_gradient = jax.jit(jax.grad(lambda t, x, y: loss(t, x, y, True)))
    probe_gradient = jax.jit(jax.grad(lambda t, x, y: loss(t, x, y, False)))
    arrays = {}
    for epoch in range(RNN_EPOCHS):
        for step in range(RNN_STEPS_PER_EPOCH):
            batch = slice(step * BATCH, (step + 1) * BATCH)
            grads = step_gradient(trainable, x[batch], y[batch])
            for i, g in enumerate(grads):
                arrays[f"step/{epoch}/{step}/{i}"] = np.asarray(g)
            trainable = [w - np.float32(RNN_LR) * g
                         for w, g in zip(trainable, grads)]
        probe = probe_gradient(trainable, x[:RNN_PROBE], y[:RNN_PROBE])
        for i, (g, w) in enumerate(zip(probe, trainable)):
            arrays[f"probe/{epoch}/{i}"] = np.asarray(g)
            arrays[f"weights/{epoch}/{i}"] = np.asarray(w)
    arrays["names"] = np.array([v.path.split("/", 1)[1]
                                for v in clone.trainable_variables])
    np.savez(path, **arrays)


def saving(out, trained, counts):
    """Saves the model trained with the callback, reloads it, and trains
    the same model without the callback."""
    directory = os.path.join(out, "saving")
    os.makedirs(directory)
    trained.save(os.path.join(directory, "with_callback.keras"))
    trained.save_weights(os.path.join(directory, "with_callback.weights.h5"))
    loaded = keras.saving.load_model(
        os.path.join(directory, "with_callback.keras"))
    keras.utils.clear_session()
    x, y = mlp_data()
    plain = mlp_model()
    with counting_compiles(counts, "mlp_without_callback"):
        plain.fit(x, y, batch_size=BATCH, epochs=MLP_EPOCHS, shuffle=False,
                  verbose=0)
    plain.save(os.path.join(directory, "without_callback.keras"))
    plain.save_weights(os.path.join(directory, "without_callback.weights.h5"))
    arrays = {}
    for name, model in (("trained", trained), ("loaded", loaded),
                        ("plain", plain)):
        for i, w in enumerate(model.get_weights()):
            arrays[f"{name}/weight/{i}"] = w
        for i, v in enumerate(model.optimizer.variables):
            arrays[f"{name}/optimizer/{i}"] = np.asarray(v.value)
        arrays[f"{name}/prediction"] = np.asarray(model.predict(x, verbose=0))
    np.savez(os.path.join(directory, "arrays.npz"), **arrays)


def host_transfers(out):
    """Trains the `HOST_MODELS`; writes each one's parameter count and the
    host bytes of each window to ``OUT/host_bytes.json``."""
    results = {}
    for name, (inputs, units) in HOST_MODELS.items():
        keras.utils.clear_session()
        model = keras.Sequential([keras.Input((inputs,)),
                                  dense(units, "hidden", activation="relu"),
                                  dense(64, "out")])
        seeded_weights(model, 31)
        model.compile(keras.optimizers.SGD(0.01), "mse")
        rng = np.random.default_rng(31)
        x = rng.normal(size=(HOST_STEPS_PER_EPOCH * BATCH, inputs)).astype(
            "float32")
        y = rng.normal(size=(len(x), 64)).astype("float32")
        callback = GradientTensorBoard(
            os.path.join(out, "host", name), resume_state=False,
            heatmap_cells=HOST_HEATMAP_CELLS)
        moved = []

        class Transfers(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                moved.append(callback._windows["training"].kernel.host_bytes)

        model.fit(x, y, batch_size=BATCH, epochs=HOST_EPOCHS, verbose=0,
                  shuffle=False, callbacks=[callback, Transfers()])
        results[name] = {
            "params": int(sum(np.prod(v.shape)
                              for v in model.trainable_variables)),
            "variables": len(model.trainable_variables),
            "per_window": np.diff([0] + moved).tolist()}
    with open(os.path.join(out, "host_bytes.json"), "w") as f:
        json.dump(results, f, indent=1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--saving", action="store_true")
    args = parser.parse_args()
    tf.config.experimental.enable_op_determinism()
    counts = {}
    with counting_compiles(counts, "mlp"):
        trained = train_mlp(args.out)
    keras.utils.clear_session()
    with counting_compiles(counts, "recurrent"):
        initial = train_recurrent(args.out)
    if args.reference:
        jax_reference(os.path.join(args.out, "reference.npz"), initial)
    for name, train in (("mixed", train_mixed),
                        ("nonfinite", train_nonfinite),
                        ("accumulation", train_accumulation)):
        keras.utils.clear_session()
        with counting_compiles(counts, name):
            train(args.out)
    host_transfers(args.out)
    if args.saving:
        saving(args.out, trained, counts)
    if keras.backend.backend() == "jax":
        with open(os.path.join(args.out, "compiles.json"), "w") as f:
            json.dump(counts, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
