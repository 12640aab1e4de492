"""The hooked train function and the window-end functions are traced once.

`fit` called again, with the same or a new `GradientTensorBoard`, reuses
them; a `fit` without the callback runs Keras's own train function and
records nothing; training several models one after another does not make
TensorFlow warn about retracing.
"""

import logging

import keras
import numpy as np
import tensorflow as tf

from tb_gradients import GradientTensorBoard
from tb_gradients.capture import tensorflow as tf_capture
from tb_gradients.window.kernels import tensorflow as tf_kernel

from tests import eventfiles


def mlp(units=5, seed=3):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(units, activation="tanh", name="hidden"),
        keras.layers.Dense(3, activation="softmax", name="out"),
    ])
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy())
    return model


def data(samples=96):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(samples, 6)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64")


class RetracingWarnings(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        if "retracing" in record.getMessage():
            self.messages.append(record.getMessage())


def test_later_fits_reuse_the_traced_functions(tmp_path):
    x, y = data()
    model = mlp()
    callback = GradientTensorBoard(str(tmp_path / "a"))
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[callback])
    hook = tf_capture.TrainingGradientCapture.for_model(model)
    hooked = hook._hooked_function
    functions = dict(tf_kernel._FUNCTIONS)
    traces = {key: f.tracing_count()
              for key, f in functions.items()}
    # the same callback again, then a new one on the same model
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    model.fit(x, y, batch_size=32, epochs=1, verbose=0,
              callbacks=[GradientTensorBoard(str(tmp_path / "b"))])
    assert hook._hooked_function is hooked
    assert set(tf_kernel._FUNCTIONS) == set(functions)
    for key, function in functions.items():
        assert function.tracing_count() == traces[key]
    # the new callback recorded its own epoch 0
    series = eventfiles.load(tmp_path / "b" / "train")
    assert eventfiles.scalar(series, "training", "steps", 0) == 3


def test_fit_without_the_callback_records_nothing(tmp_path):
    x, y = data()
    model = mlp()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0,
              callbacks=[GradientTensorBoard(str(tmp_path))])
    hook = tf_capture.TrainingGradientCapture.for_model(model)
    hook.begin_window()  # zero the sums
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert model.train_function is not hook._hooked_function
    for window_sum in hook.window_sums:
        assert not np.any(window_sum.numpy())
    assert not np.any(hook.window_scalars.numpy())
    # and a later fit with the callback records again, from zero
    logdir = tmp_path / "again"
    model.fit(x, y, batch_size=32, epochs=1, verbose=0,
              callbacks=[GradientTensorBoard(str(logdir))])
    series = eventfiles.load(logdir / "train")
    assert eventfiles.scalar(series, "training", "steps", 0) == 3


def test_recompile_rebuilds_the_hooked_function(tmp_path):
    x, y = data()
    model = mlp()
    callback = GradientTensorBoard(str(tmp_path))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    hooked = tf_capture.TrainingGradientCapture.for_model(model)._hooked_function
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy())
    model.fit(x, y, batch_size=32, epochs=1, verbose=0,
              callbacks=[GradientTensorBoard(str(tmp_path / "adam"))])
    hook = tf_capture.TrainingGradientCapture.for_model(model)
    assert hook._hooked_function is not hooked
    series = eventfiles.load(tmp_path / "adam" / "train")
    assert eventfiles.scalar(series, "training", "steps", 0) == 3


def test_no_retracing_warnings_across_models(tmp_path):
    x, y = data()
    handler = RetracingWarnings()
    logger = tf.get_logger()
    logger.addHandler(handler)
    try:
        for index, units in enumerate([5, 7, 5, 9, 4, 6, 8]):
            model = mlp(units=units, seed=index)
            for fit in range(2):
                model.fit(x, y, batch_size=32, epochs=1, verbose=0,
                          callbacks=[GradientTensorBoard(
                              str(tmp_path / f"{index}_{fit}"))])
    finally:
        logger.removeHandler(handler)
    assert handler.messages == []
