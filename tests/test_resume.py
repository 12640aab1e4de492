"""Crash and resume: the accumulated series continue as if uninterrupted.

Each run is a real process (`tests.resume_training`). An interrupted run is
SIGKILLed in the middle of epoch 2, then started again: with
`keras.callbacks.BackupAndRestore`, or from the user's own full-model
checkpoint with ``initial_epoch``. Every series it leaves must equal the
uninterrupted run's, each epoch or window once (the latest recording of a
window the crash made the run record twice).
"""

import glob
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_file_loader

from tb_gradients import GradientTensorBoard
from tb_gradients import resume
from tb_gradients.format import metadata
from tb_gradients.format import variable_stats

from tests import eventfiles

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILL_AT = ("2", "4")  # epoch 2, after its fifth batch (optimizer step 25)
WINDOW = "4"  # windows of 4 steps, 10 steps per epoch: windows span epochs


def train(logdir, *args, killed=False, backend="tensorflow"):
    """Runs `tests.resume_training` on a Keras backend; returns its
    completed process."""
    completed = subprocess.run(
        [sys.executable, "-m", "tests.resume_training", str(logdir), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, KERAS_BACKEND=backend))
    if killed:
        assert completed.returncode == -9, completed.stderr[-3000:]
    else:
        assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def gradient_series(logdir):
    series = eventfiles.load(os.path.join(logdir, "train"))
    return {tag: values for tag, values in series.items()
            if tag.startswith(f"{metadata.PLUGIN_NAME}/")}


def recorded_steps(logdir, tag):
    """Every step ``tag`` was written at, in every event file, in order
    (duplicates included)."""
    steps = []
    for path in sorted(glob.glob(os.path.join(logdir, "train",
                                              "events.out.tfevents.*"))):
        for event in event_file_loader.EventFileLoader(path).Load():
            for value in event.summary.value:
                if value.tag == tag:
                    steps.append(event.step)
    return steps


def assert_same_series(expected, actual):
    assert sorted(expected) == sorted(actual)
    for tag, by_step in expected.items():
        assert sorted(by_step) == sorted(actual[tag]), tag
        for step, value in by_step.items():
            np.testing.assert_allclose(
                np.asarray(actual[tag][step], np.float64),
                np.asarray(value, np.float64), rtol=1e-6, atol=1e-12,
                equal_nan=True, err_msg=f"{tag} at step {step}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    runs = {}
    for window in ("epoch", WINDOW):
        logdir = root / f"window-{window}"
        train(logdir, "--window", window)
        runs[window] = gradient_series(logdir)
    return runs


@pytest.mark.parametrize("window", ["epoch", WINDOW])
def test_backup_and_restore_continues_the_series(uninterrupted, tmp_path,
                                                 window):
    logdir = tmp_path / "run"
    train(logdir, "--window", window, "--kill-at", *KILL_AT, killed=True)
    state = os.path.join(logdir, resume.STATE_DIRECTORY)
    assert resume.saved_epochs(state) == [0, 1]
    train(logdir, "--window", window)
    assert_same_series(uninterrupted[window], gradient_series(logdir))
    if window == WINDOW:
        # the window ending at step 24 was recorded before the kill and
        # again after the resume
        tag = metadata.variable_stats_tag("training", "hidden/kernel")
        steps = recorded_steps(logdir, tag)
        assert steps.count(24) == 2 and len(steps) == 11, steps


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_backup_and_restore_continues_the_series_on_other_backends(
        tmp_path, backend):
    # the JAX and PyTorch captures' open window (their accumulators, not
    # variables) is saved and restored like the TensorFlow capture's
    reference = tmp_path / "uninterrupted"
    train(reference, "--window", WINDOW, backend=backend)
    logdir = tmp_path / "run"
    train(logdir, "--window", WINDOW, "--kill-at", *KILL_AT, killed=True,
          backend=backend)
    train(logdir, "--window", WINDOW, backend=backend)
    assert_same_series(gradient_series(reference), gradient_series(logdir))


def test_initial_epoch_from_a_full_model_checkpoint(uninterrupted, tmp_path):
    logdir = tmp_path / "run"
    train(logdir, "--mode", "checkpoint", "--window", WINDOW, "--kill-at",
          *KILL_AT, killed=True)
    train(logdir, "--mode", "checkpoint", "--window", WINDOW)
    assert_same_series(uninterrupted[WINDOW], gradient_series(logdir))


def test_the_plugin_shows_a_window_recorded_twice_once(uninterrupted,
                                                       tmp_path):
    from werkzeug import test as werkzeug_test

    from tests.test_plugin_wsgi import get_json
    from tests.test_plugin_wsgi import make_app

    logdir = tmp_path / "run"
    train(logdir, "--window", WINDOW, "--kill-at", *KILL_AT, killed=True)
    train(logdir, "--window", WINDOW)
    app, _, _ = make_app(logdir)
    client = werkzeug_test.Client(app)
    body = get_json(client, "/variable_stats", run="train",
                    source="training", stats="accumulated_norm")
    assert body["epochs"] == list(range(4, 41, 4))
    expected = uninterrupted[WINDOW][metadata.variable_stats_tag(
        "training", "hidden/kernel")]
    served = next(v for v in body["variables"]
                  if v["name"] == "hidden/kernel")
    norm = variable_stats.VARIABLE_STAT_NAMES.index("accumulated_norm")
    np.testing.assert_allclose(
        [row[0] for row in served["values"]],
        [expected[step][norm] for step in body["epochs"]], rtol=1e-6)


# -- in-process: what happens when the state cannot be continued -----------


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64")


def _model(units=8):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(units, activation="tanh"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def test_a_resume_without_state_warns_and_starts_anew(tmp_path):
    x, y = _data()
    callback = GradientTensorBoard(str(tmp_path), heatmap_cells=16)
    with pytest.warns(UserWarning, match="resumes at epoch 2.*no gradient "
                      "state for epoch 1.*restart from zero at epoch 2"):
        _model().fit(x, y, epochs=3, initial_epoch=2, verbose=0,
                     callbacks=[callback])
    series = gradient_series(str(tmp_path))
    tag = metadata.variable_stats_tag("training", "dense/kernel")
    assert sorted(series[tag]) == [2]


def test_a_resume_of_another_model_warns_and_starts_anew(tmp_path):
    x, y = _data()
    _model().fit(x, y, epochs=2, verbose=0, callbacks=[
        GradientTensorBoard(str(tmp_path), heatmap_cells=16)])
    with pytest.warns(UserWarning, match="variables differ"):
        _model(units=5).fit(x, y, epochs=3, initial_epoch=2, verbose=0,
                            callbacks=[GradientTensorBoard(
                                str(tmp_path), heatmap_cells=16)])


def test_a_new_run_from_epoch_0_clears_old_state(tmp_path):
    x, y = _data()
    state = os.path.join(tmp_path, resume.STATE_DIRECTORY)
    _model().fit(x, y, epochs=3, verbose=0, callbacks=[
        GradientTensorBoard(str(tmp_path), heatmap_cells=16)])
    assert resume.saved_epochs(state) == [1, 2]
    _model().fit(x, y, epochs=1, verbose=0, callbacks=[
        GradientTensorBoard(str(tmp_path), heatmap_cells=16)])
    assert resume.saved_epochs(state) == [0]


def test_resume_state_off_writes_nothing(tmp_path):
    x, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _model().fit(x, y, epochs=2, verbose=0, callbacks=[
            GradientTensorBoard(str(tmp_path), resume_state=False)])
    assert not os.path.exists(os.path.join(tmp_path,
                                           resume.STATE_DIRECTORY))


def test_bad_resume_state(tmp_path):
    with pytest.raises(TypeError, match=r"resume_state.*Received: "
                       r"resume_state='yes'"):
        GradientTensorBoard(str(tmp_path), resume_state="yes")


def test_an_interrupted_write_leaves_the_previous_state(tmp_path):
    directory = str(tmp_path)
    resume.save(directory, 0, {"step": 1}, [("a", np.arange(3.0))])

    def arrays():
        yield "a", np.arange(3.0)
        raise KeyboardInterrupt  # the process stops while writing

    with pytest.raises(KeyboardInterrupt):
        resume.save(directory, 1, {"step": 2}, arrays())
    assert sorted(os.listdir(directory)) == ["epoch-000000.npz"]
    meta, loaded = resume.load(directory, 0)
    assert meta["step"] == 1 and meta["epoch"] == 0
    np.testing.assert_array_equal(loaded["a"], np.arange(3.0))


def test_a_damaged_state_file_is_named(tmp_path):
    with open(resume.state_path(str(tmp_path), 3), "wb") as handle:
        handle.write(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match="epoch-000003.npz"):
        resume.load(str(tmp_path), 3)


def test_large_tensors_are_written_in_chunks_and_read_back_exactly(
        tmp_path, monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(resume, "CHUNK_BYTES", 64)  # 16 float32 per chunk
    values = tf.random.stateless_normal([37, 11], seed=[1, 2])
    bits = tf.bitcast(tf.cast(values, tf.bfloat16), tf.uint16)
    variable = tf.Variable(tf.range(50, dtype=tf.float64))
    resume.save(str(tmp_path), 2, {}, [("values", values), ("bits", bits),
                                       ("variable", variable)])
    _, loaded = resume.load(str(tmp_path), 2)
    np.testing.assert_array_equal(loaded["values"], values.numpy())
    np.testing.assert_array_equal(loaded["bits"], bits.numpy())
    assert loaded["bits"].dtype == np.uint16
    np.testing.assert_array_equal(loaded["variable"], np.arange(50.0))


def test_a_state_that_cannot_be_written_is_a_warning(tmp_path):
    """The state is written by a background thread; a failure (here: its
    directory is a file) is reported, and training and logging go on."""
    (tmp_path / resume.STATE_DIRECTORY).write_text("not a directory")
    x, y = _data()
    with pytest.warns(UserWarning, match="cannot write the gradient state"):
        _model().fit(x, y, epochs=2, verbose=0, callbacks=[
            GradientTensorBoard(str(tmp_path), heatmap_cells=16)])
    series = gradient_series(str(tmp_path))
    tag = metadata.variable_stats_tag("training", "dense/kernel")
    assert sorted(series[tag]) == [0, 1]
