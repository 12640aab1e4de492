"""The training capture under the configurations users actually train with.

Each test compares the epoch gradient recorded by `fit` with an independent
GradientTape computation (see tests/reference.py), or checks that a
configuration that used to break gradient logging now trains and records.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tb_gradients import GradientTensorBoard
from tb_gradients.analysis import reader
from tb_gradients.capture import tensorflow as tf_capture
from tb_gradients.format import heatmap
from tb_gradients.format import metadata

from tests import eventfiles
from tests import reference
from tests.test_statistics_exact import expected_stats

LR = 0.05
# mixed_float16 against a reference step in float16 with the same loss
# scale: float32 round-off of the window-end reductions (no float16 unit)
MIXED_RTOL = 1e-6


def mlp(seed=3, inputs=6):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((inputs,)),
        keras.layers.Dense(5, activation="tanh", name="hidden"),
        keras.layers.Dense(3, activation="softmax", name="out"),
    ])


def data(samples=96, inputs=6, seed=7):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, inputs)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5)
    return x, y


def names_of(model):
    return [v.path.split("/", 1)[1] for v in model.trainable_variables]


def recorded(series, source, name, epoch):
    return eventfiles.variable_stats(series, source, name, epoch)


def assert_matches_reference(series, model, epochs_grads, rtol=2e-4):
    """Recorded mean / l2 / max_abs equal those of the reference G."""
    for epoch, per_step in enumerate(epochs_grads):
        for index, name in enumerate(names_of(model)):
            g = sum(step[index] for step in per_step)
            got = recorded(series, "training", name, epoch)
            assert got["mean"] == pytest.approx(g.mean(), rel=rtol, abs=1e-7)
            assert got["l2"] == pytest.approx(np.sqrt((g ** 2).sum()), rel=rtol)
            assert got["max_abs"] == pytest.approx(np.abs(g).max(), rel=rtol)
            assert got["steps"] == len(per_step)


def train_and_compare(tmp_path, epochs=2, batch=32, compile_kwargs=None,
                      optimizer_kwargs=None, fit_kwargs=None, clip=None):
    x, y = data()
    model = mlp()
    twin = reference.clone_with_weights(model)
    model.compile(keras.optimizers.SGD(LR, **(optimizer_kwargs or {})),
                  keras.losses.SparseCategoricalCrossentropy(),
                  **(compile_kwargs or {}))
    model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=False, verbose=0,
              callbacks=[GradientTensorBoard(str(tmp_path))],
              **(fit_kwargs or {}))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    grads = reference.tape_training(twin, loss_fn, x, y, batch, epochs, LR,
                                    clip_norm=clip)
    series = eventfiles.load(tmp_path / "train")
    assert_matches_reference(series, model, grads)
    return model, series


def test_jit_compile(tmp_path):
    train_and_compare(tmp_path, compile_kwargs={"jit_compile": True})


def test_steps_per_execution(tmp_path):
    _, series = train_and_compare(tmp_path,
                                  compile_kwargs={"steps_per_execution": 2})
    # per-step rows are still one per optimizer step
    assert series[metadata.steps_tag("training")][0].shape == (3, 2)


def test_gradient_clipping_records_the_clipped_gradient(tmp_path):
    train_and_compare(tmp_path, optimizer_kwargs={"clipnorm": 0.05},
                      clip=0.05)


def test_optimizer_patch_is_undone_and_checkpoint_is_clean(tmp_path):
    x, y = data()
    model = mlp()
    model.compile(keras.optimizers.SGD(LR, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy())
    plain = mlp()
    plain.compile(keras.optimizers.SGD(LR, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy())
    plain.fit(x, y, epochs=1, verbose=0)
    model.fit(x, y, epochs=2, verbose=0,
              callbacks=[GradientTensorBoard(str(tmp_path / "logs"))])
    assert "update_step" not in model.optimizer.__dict__
    # Keras's own train function is back; the hooked one stays with the
    # model's capture for the next fit with the callback
    assert model.train_function is not tf_capture.TrainingGradientCapture.for_model(
        model)._hooked_function
    assert len(model.optimizer.variables) == len(plain.optimizer.variables)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for v in loaded.optimizer.variables + loaded.weights:
        assert "tb_gradients" not in v.path
    # a later fit without the callback trains normally
    loaded.fit(x, y, epochs=1, verbose=0)


def test_patch_undone_when_training_raises(tmp_path):
    x, y = data()
    model = mlp()
    model.compile(keras.optimizers.SGD(LR),
                  keras.losses.SparseCategoricalCrossentropy())

    def batches():
        yield x[:32], y[:32]
        yield x[:32, :4], y[:32]  # wrong feature count: fails in the step

    dataset = tf.data.Dataset.from_generator(
        batches, output_signature=(tf.TensorSpec((None, None), tf.float32),
                                   tf.TensorSpec((None,), tf.int64)))
    with pytest.raises(Exception):
        model.fit(dataset, epochs=1, verbose=0,
                  callbacks=[GradientTensorBoard(str(tmp_path))])
    assert "update_step" not in model.optimizer.__dict__
    assert model.train_function is not tf_capture.TrainingGradientCapture.for_model(
        model)._hooked_function
    model.fit(x, y, epochs=1, verbose=0)


def test_second_fit_and_gradient_freq_keep_accumulating(tmp_path):
    x, y = data()
    model = mlp()
    twin = reference.clone_with_weights(model)
    model.compile(keras.optimizers.SGD(LR),
                  keras.losses.SparseCategoricalCrossentropy())
    callback = GradientTensorBoard(str(tmp_path), gradient_freq=2)
    model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0,
              callbacks=[callback])
    model.fit(x, y, batch_size=32, epochs=4, initial_epoch=2, shuffle=False,
              verbose=0, callbacks=[callback])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    grads = reference.tape_training(twin, loss_fn, x, y, 32, 4, LR)
    series = eventfiles.load(tmp_path / "train")
    name = names_of(model)[0]
    tag = metadata.variable_stats_tag("training", name)
    assert sorted(series[tag]) == [0, 2]
    accumulated = sum(sum(step[0] for step in epoch) for epoch in grads[:3])
    got = recorded(series, "training", name, 2)
    assert got["l2_accumulated"] == pytest.approx(
        np.sqrt((accumulated ** 2).sum()), rel=2e-4)


def test_initial_epoch_resume_writes_at_the_resumed_epochs(tmp_path):
    x, y = data()
    model = mlp()
    model.compile(keras.optimizers.SGD(LR),
                  keras.losses.SparseCategoricalCrossentropy())
    model.fit(x, y, epochs=5, initial_epoch=3, verbose=0,
              callbacks=[GradientTensorBoard(str(tmp_path))])
    series = eventfiles.load(tmp_path / "train")
    assert sorted(series[metadata.scalar_tag("training", "norm")]) == [3, 4]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_embedding_indexed_slices_with_repeated_ids(tmp_path, jit_compile):
    keras.utils.set_random_seed(5)
    model = keras.Sequential([
        keras.Input((5,), dtype="int32"),
        keras.layers.Embedding(12, 4, name="embed"),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(2, activation="softmax", name="out"),
    ])
    twin = reference.clone_with_weights(model)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=(64, 5)).astype("int32")  # many repeats
    y = (x[:, 0] > 2).astype("int64")
    model.compile(keras.optimizers.SGD(LR),
                  keras.losses.SparseCategoricalCrossentropy(),
                  jit_compile=jit_compile)
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
              callbacks=[GradientTensorBoard(str(tmp_path),
                                             heatmap_encoding="float32")])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    grads = reference.tape_training(twin, loss_fn, x, y, 16, 2, LR)
    series = eventfiles.load(tmp_path / "train")
    assert_matches_reference(series, model, grads)
    # sum |g| per step uses the step's summed rows: within-epoch dissolving
    name = names_of(model)[0]
    for epoch, per_step in enumerate(grads):
        g = sum(step[0] for step in per_step)
        want = (sum(np.abs(s[0]).sum() for s in per_step)
                - np.abs(g).sum()) / g.size
        got = recorded(series, "training", name, epoch)
        assert got["within_epoch_dissolving_norm"] == pytest.approx(
            want, rel=1e-3, abs=1e-8)
        heat = series[metadata.heatmap_tag("training", name)][epoch]
        np.testing.assert_allclose(heat[0], np.abs(g), rtol=2e-4, atol=1e-8)


class _UnusedWeight(keras.layers.Layer):
    """Holds a weight the loss does not depend on: it never gets a gradient."""

    def build(self, shape):
        self.unused = self.add_weight(shape=(3,), name="unused")

    def call(self, x):
        return x


def test_frozen_layer_and_variable_without_gradient(tmp_path):
    keras.utils.set_random_seed(2)
    frozen = keras.layers.Dense(5, name="frozen")
    frozen.trainable = False
    model = keras.Sequential([keras.Input((6,)), frozen,
                              _UnusedWeight(name="unused_layer"),
                              keras.layers.Dense(3, activation="softmax",
                                                 name="out")])
    x, y = data()
    model.compile(keras.optimizers.SGD(LR),
                  keras.losses.SparseCategoricalCrossentropy())
    with pytest.warns(UserWarning):  # Keras warns about the missing gradient
        model.fit(x, y, epochs=2, verbose=0,
                  callbacks=[GradientTensorBoard(str(tmp_path))])
    series = eventfiles.load(tmp_path / "train")
    tags = [t for t in series if t.startswith("gradients/training/variable/")]
    assert not any("frozen" in t for t in tags)
    unused = recorded(series, "training", "unused_layer/unused", 1)
    assert unused["steps"] == 0 and unused["l2"] == 0
    out = recorded(series, "training", "out/kernel", 1)
    assert out["steps"] == 3 and out["l2"] > 0


def test_nan_gradients_are_counted_not_fatal(tmp_path):
    from tests import logdirs

    run = logdirs.train_nan_run(tmp_path / "nan", epochs=2)
    series = eventfiles.load(run / "train")
    assert eventfiles.scalar(series, "training", "nan_count", 0) > 0
    kernel = recorded(series, "training", "dense/kernel", 0)
    assert kernel["nan_count"] > 0
    assert np.isfinite(kernel["norm"])  # the finite elements still count
    heat = series[metadata.heatmap_tag("training", "dense/kernel")][0]
    assert (heat == heatmap.HEATMAP_CODE_NAN).any()


def test_mixed_precision_records_unscaled_gradients_and_skipped_steps(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16")
    x, y = data(samples=64)
    model = mlp()
    model.compile(keras.optimizers.SGD(LR),
                  keras.losses.SparseCategoricalCrossentropy())
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    twin = reference.clone_with_weights(model)
    twin_before = reference.clone_with_weights(model)
    x_bad = x.copy()
    x_bad[32:] = 1e6  # overflows float16: the second step is skipped
    model.fit(x_bad, y, batch_size=32, epochs=1, shuffle=False, verbose=0,
              callbacks=[GradientTensorBoard(str(tmp_path))])
    series = eventfiles.load(tmp_path / "train")
    assert eventfiles.scalar(series, "training", "skipped_steps", 0) == 1
    assert eventfiles.scalar(series, "training", "nan_count", 0) == 0
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    first = reference.tape_training(twin, loss_fn, x[:32], y[:32], 32, 1, LR)
    for index, name in enumerate(names_of(model)):
        g = first[0][0][index]
        got = recorded(series, "training", name, 0)
        assert got["steps"] == 1
        # unscaled: the loss scale is 32768, far outside this tolerance
        assert got["l2"] == pytest.approx(np.sqrt((g ** 2).sum()), rel=2e-2)
    # The same float16 step with the loss scaled by Keras's initial 2**15 and
    # unscaled after: a power of two moves no float16 bit (nothing here
    # under- or overflows), so only the summation order differs from fit's.
    scaled = reference.tape_training(twin_before, loss_fn, x[:32], y[:32], 32,
                                     1, LR, loss_scale=2.0 ** 15)
    wanted = [expected_stats([scaled[0][0][index]], [[scaled[0][0][index]]])
              for index in range(len(scaled[0][0]))]
    for index, name in enumerate(names_of(model)):
        got = recorded(series, "training", name, 0)
        for key, value in wanted[index][0].items():
            if key.startswith("_"):
                continue
            assert got[key] == pytest.approx(value, rel=MIXED_RTOL, abs=1e-9,
                                             nan_ok=True), (name, key)


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from tb_gradients import GradientTensorBoard
    from tests import eventfiles
    from tb_gradients.format import metadata
    def run(logdir, strategy):
        keras.utils.set_random_seed(3)
        with strategy.scope():
            model = keras.Sequential([
                keras.Input((6,)),
                keras.layers.Dense(5, activation="tanh", name="hidden"),
                keras.layers.Dense(3, activation="softmax", name="out")])
            model.compile(keras.optimizers.SGD(0.05, momentum=0.5),
                          keras.losses.SparseCategoricalCrossentropy())
        rng = np.random.default_rng(7)
        x = rng.normal(size=(128, 6)).astype("float32")
        y = (x[:, 0] > 0).astype("int64")
        model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0,
                  callbacks=[GradientTensorBoard(logdir)])
        series = eventfiles.load(os.path.join(logdir, "train"))
        return {tag: {str(k): v.tolist() for k, v in steps.items()}
                for tag, steps in series.items()
                if tag.startswith("gradients/training/variable/")
                or tag.startswith("gradients/training/per_step")}

    single = run(sys.argv[1] + "/single", tf.distribute.OneDeviceStrategy("/cpu:0"))
    mirrored = run(sys.argv[1] + "/mirrored",
                   tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    print(json.dumps({"single": single, "mirrored": mirrored,
                      "replicas": 2}))
""")


def test_mirrored_strategy_equals_single_device(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path)], cwd=root,
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    out = json.loads(result.stdout.strip().splitlines()[-1])
    single, mirrored = out["single"], out["mirrored"]
    assert set(single) == set(mirrored) and len(single) == 5
    for tag in single:
        for step in single[tag]:
            a = np.array(single[tag][step], dtype=np.float64)
            b = np.array(mirrored[tag][step], dtype=np.float64)
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-7,
                                       err_msg=f"{tag} epoch {step}")


def test_dataset_of_unknown_length_is_recorded_every_epoch(tmp_path):
    # Keras ends an epoch of a dataset of unknown length when the train
    # function raises at the data's end: the capture must stay attached.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.normal(size=(32, 2)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).filter(
        lambda *_: True).batch(8)
    assert dataset.cardinality() == tf.data.UNKNOWN_CARDINALITY
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    model.fit(dataset, epochs=3, verbose=0,
              callbacks=[GradientTensorBoard(str(tmp_path))])
    training = reader.load_runs(str(tmp_path))["train"].sources["training"]
    assert training.stat("steps")[:, 0].tolist() == [4.0, 4.0, 4.0]
