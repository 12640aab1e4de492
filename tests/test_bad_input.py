"""Wrong arguments fail early, with the argument's name and received value."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tb_gradients import GradientTensorBoard


def compiled_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    return model


@pytest.mark.parametrize("kwargs, error, words", [
    ({"source": "gradient"}, ValueError, "source='gradient'"),
    ({"source": None}, ValueError, "source=None"),
    ({"source": "probe"}, ValueError, "probe_data=None"),
    ({"gradient_freq": 0}, ValueError, "gradient_freq=0"),
    ({"gradient_freq": "2"}, TypeError, "gradient_freq='2'"),
    ({"gradient_freq": True}, TypeError, "gradient_freq=True"),
    ({"heatmap_cells": -1}, ValueError, "heatmap_cells=-1"),
    ({"heatmap_encoding": "png"}, ValueError, "heatmap_encoding='png'"),
    ({"histograms": "yes"}, TypeError, "histograms='yes'"),
    ({"probe_batches": 0, "source": "probe",
      "probe_data": (np.zeros((2, 4)), np.zeros((2, 2)))}, ValueError,
     "probe_batches=0"),
    ({"source": "probe", "probe_data": np.zeros((4, 4))}, TypeError,
     "probe_data of type ndarray"),
    ({"source": "probe", "probe_data": (np.zeros((4, 4)),)}, ValueError,
     "a tuple of 1 elements"),
    ({"source": "probe", "probe_data": (np.zeros((4, 4)), np.zeros((3, 2)))},
     ValueError, "lengths [3, 4]"),
])
def test_constructor_rejects(tmp_path, kwargs, error, words):
    with pytest.raises(error) as info:
        GradientTensorBoard(log_dir=str(tmp_path), **kwargs)
    assert words in str(info.value)


def test_probe_data_that_does_not_fit_fails_before_training(tmp_path):
    model = compiled_model()
    before = [w.copy() for w in model.get_weights()]
    callback = GradientTensorBoard(
        str(tmp_path), source="probe",
        probe_data=(np.zeros((8, 7), "float32"), np.zeros((8, 2), "float32")))
    with pytest.raises(ValueError) as info:
        model.fit(np.zeros((8, 4), "float32"), np.zeros((8, 2), "float32"),
                  epochs=1, verbose=0, callbacks=[callback])
    assert "probe_data" in str(info.value)
    assert "(8, 7)" in str(info.value)
    assert int(model.optimizer.iterations.numpy()) == 0
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_probe_dataset_is_limited_to_probe_batches(tmp_path):
    model = compiled_model()
    x = np.ones((40, 4), "float32")
    y = np.zeros((40, 2), "float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    callback = GradientTensorBoard(str(tmp_path), source="probe",
                                   probe_data=dataset, probe_batches=3)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    from tests import eventfiles

    series = eventfiles.load(tmp_path / "train")
    assert eventfiles.variable_stats(series, "probe", "dense/kernel",
                                     0)["steps"] == 3


def test_only_the_tensorflow_jax_and_torch_backends_are_accepted():
    # Keras fixes its backend at import: check the guard itself, then that
    # the constructor calls it with the live backend's name (a real numpy
    # backend process: tests/test_backends.py).
    from tb_gradients import distribution
    for name in ("numpy", "openvino"):
        with pytest.raises(ValueError) as info:
            distribution.check_backend(name)
        assert f"backend='{name}'" in str(info.value)
        assert "('tensorflow', 'jax', 'torch')" in str(info.value)
    for name in ("tensorflow", "jax", "torch"):
        assert distribution.check_backend(name) == name
    import inspect

    assert "check_backend(keras.backend.backend())" in inspect.getsource(
        GradientTensorBoard.__init__)


def test_uncompiled_model_is_rejected_at_train_begin(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    callback = GradientTensorBoard(str(tmp_path))
    callback.set_model(model)
    with pytest.raises(ValueError, match="optimizer=None"):
        callback.on_train_begin()
