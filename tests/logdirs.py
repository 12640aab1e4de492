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


RECURRENT_STEPS, RECURRENT_FEATURES = 10, 3


def _sequence_data(samples=64, seed=0):
    """A sequence task whose target depends on the first timesteps.

    Sample 0 is padded with zeros after timestep 5 (masked by `Masking`),
    so the masked timesteps are in the probe samples.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, RECURRENT_STEPS,
                         RECURRENT_FEATURES)).astype("float32")
    x[0, 5:] = 0.0
    y = (x[:, 0, :1] * 0.5 + x[:, 1, 1:2] * 0.25).astype("float32")
    return x, y


def train_recurrent_run(run_dir, encoder="LSTM", epochs=3, source="both",
                        seed=0, probe_samples=8, with_probe=None,
                        **callback_kwargs):
    """A recurrent model on a generated sequence task; returns ``run_dir``.

    Masking, then ``encoder`` (``"LSTM"`` or ``"GRU"``, returning
    sequences), a `Bidirectional` GRU (returning sequences, concatenated
    halves), a SimpleRNN without time axis and a Dense head, with the same
    layer names whatever the encoder so runs can be compared layer by
    layer. The probe data are the first ``probe_samples`` samples (sample 0
    is masked after timestep 5); ``source="training"`` trains without
    probe data unless ``with_probe=True`` (timestep series without probe
    statistics). Keras's name counters are reset first, so the variables
    have the same names in every run (``bidirectional/forward_gru/...``).
    """
    import keras

    from tb_gradients import GradientTensorBoard

    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    x, y = _sequence_data(seed=seed)
    recurrent = getattr(keras.layers, encoder)
    model = keras.Sequential([
        keras.Input((RECURRENT_STEPS, RECURRENT_FEATURES)),
        keras.layers.Masking(0.0, name="mask"),
        recurrent(6, return_sequences=True, name="encoder"),
        keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True),
                                   name="bidirectional"),
        keras.layers.SimpleRNN(3, name="last"),
        keras.layers.Dense(1, name="head"),
    ])
    model.compile(keras.optimizers.SGD(0.05), "mse")
    probe = source != "training" if with_probe is None else with_probe
    callback = GradientTensorBoard(
        log_dir=str(run_dir), source=source,
        probe_data=(x[:probe_samples], y[:probe_samples]) if probe else None,
        timestep_samples=probe_samples, **callback_kwargs)
    model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0,
              callbacks=[callback])
    return run_dir


def recurrent_logdir(root):
    """Two recurrent runs on the same task: an LSTM and a GRU encoder.

    The GRU run block-averages pairs of timesteps (``timestep_cells=5``),
    so its masked sample has a half-valid block.
    """
    root = str(root)
    train_recurrent_run(os.path.join(root, "lstm"), encoder="LSTM")
    train_recurrent_run(os.path.join(root, "gru"), encoder="GRU",
                        timestep_cells=5)
    return root
