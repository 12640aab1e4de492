"""Windows of N optimizer steps (``gradient_window=N``).

A 1-epoch run of 64 steps with windows of 16 steps writes 4 records, at the
global optimizer steps 16, 32, 48, 64; each window gradient equals the sum
of the 16 step gradients of an independent GradientTape loop, and the
accumulated series is their running sum.
"""

import json

import keras
import numpy as np
import pytest

from tb_gradients import GradientTensorBoard
from tb_gradients.format import metadata

from tests import eventfiles
from tests import reference

LR = 0.05
BATCH = 4
STEPS = 64
WINDOW = 16


def make_data():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(STEPS * BATCH, 6)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype("int64")


def make_model():
    keras.utils.set_random_seed(5)
    return keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(5, activation="tanh", name="hidden"),
        keras.layers.Dense(2, activation="softmax", name="out"),
    ])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    keras.utils.clear_session()
    x, y = make_data()
    model = make_model()
    twin = reference.clone_with_weights(model)
    model.compile(keras.optimizers.SGD(LR),
                  keras.losses.SparseCategoricalCrossentropy())
    logdir = tmp_path_factory.mktemp("windows")
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
              callbacks=[GradientTensorBoard(
                  str(logdir), gradient_window=WINDOW,
                  heatmap_encoding="float32")])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    steps = reference.tape_training(twin, loss_fn, x, y, BATCH, 1, LR)[0]
    names = [v.path.split("/", 1)[1] for v in model.trainable_variables]
    return {"series": eventfiles.load(logdir / "train"), "steps": steps,
            "names": names, "logdir": logdir}


def test_one_record_per_window_at_the_global_step(run):
    tag = metadata.variable_stats_tag("training", run["names"][0])
    assert sorted(run["series"][tag]) == [16, 32, 48, 64]
    content = json.loads(
        run["series"]["__metadata__"][tag].plugin_data.content)
    assert content["window"] == WINDOW
    assert content["version"] == metadata.FORMAT_VERSION


@pytest.mark.parametrize("index", range(4))
def test_window_gradients_and_accumulation(run, index):
    name = run["names"][index]
    heat_tag = metadata.heatmap_tag("training", name)
    accumulated = 0
    for k, end in enumerate([16, 32, 48, 64]):
        steps = run["steps"][k * WINDOW:(k + 1) * WINDOW]
        g = sum(step[index] for step in steps)
        accumulated = accumulated + g
        got = eventfiles.variable_stats(run["series"], "training", name, end)
        assert got["steps"] == WINDOW
        assert got["l2"] == pytest.approx(np.sqrt((g ** 2).sum()), rel=2e-4)
        # float32 sums of 16 steps: the mean of a cancelling bias sits at
        # their rounding, about 1e-7 of its elements
        assert got["mean"] == pytest.approx(g.mean(), rel=2e-4,
                                            abs=1e-6 * np.abs(g).max())
        assert got["l2_accumulated"] == pytest.approx(
            np.sqrt((accumulated ** 2).sum()), rel=2e-4)
        heat = run["series"][heat_tag][end]
        np.testing.assert_allclose(heat[0].reshape(-1),
                                   np.abs(g).reshape(-1), rtol=2e-4,
                                   atol=1e-7)
        np.testing.assert_allclose(heat[2].reshape(-1),
                                   np.abs(accumulated).reshape(-1),
                                   rtol=2e-4, atol=1e-7)
        table = run["series"][metadata.steps_tag("training")][end]
        assert table.shape == (WINDOW, 2)


def test_partial_window_at_the_end_of_fit(tmp_path):
    x, y = make_data()
    model = make_model()
    model.compile(keras.optimizers.SGD(LR),
                  keras.losses.SparseCategoricalCrossentropy())
    model.fit(x[:40 * BATCH], y[:40 * BATCH], batch_size=BATCH, epochs=1,
              verbose=0, callbacks=[GradientTensorBoard(
                  str(tmp_path), gradient_window=WINDOW)])
    series = eventfiles.load(tmp_path / "train")
    tag = metadata.variable_stats_tag("training", "hidden/kernel")
    assert sorted(series[tag]) == [16, 32, 40]
    assert eventfiles.variable_stats(series, "training", "hidden/kernel",
                                     40)["steps"] == 8


@pytest.mark.parametrize("value", ["steps", 0, 2.5, True])
def test_bad_gradient_window(tmp_path, value):
    with pytest.raises((ValueError, TypeError), match="gradient_window"):
        GradientTensorBoard(str(tmp_path), gradient_window=value)


def test_the_plugin_serves_a_window_run(run):
    """Today's routes answer a window run with its steps (the tab's step
    axis is still to come)."""
    from werkzeug import test as werkzeug_test

    from tests.test_plugin_wsgi import get_json
    from tests.test_plugin_wsgi import make_app

    app, _, _ = make_app(run["logdir"])
    client = werkzeug_test.Client(app)
    runs = get_json(client, "/runs")["runs"]
    assert [(r["run"], r["epochs"]) for r in runs] == [("train", 4)]
    body = get_json(client, "/variable_stats", run="train",
                    source="training")
    assert body["epochs"] == [16, 32, 48, 64]
    steps = get_json(client, "/steps", run="train", source="training")
    assert [e["epoch"] for e in steps["epochs"]] == [16, 32, 48, 64]
    assert get_json(client, "/heatmap", run="train", source="training",
                    variable="hidden/kernel")


def test_probe_and_timesteps_follow_the_windows(tmp_path):
    """With ``gradient_freq=2`` the probe gradient and the timestep
    gradients are computed at every other window's end, on the weights of
    that step, and the probe's accumulation runs over those windows."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(STEPS * BATCH, 5, 3)).astype("float32")
    y = (x[:, :, 0].sum(axis=1) > 0).astype("int64")
    probe_x, probe_y = x[:16], y[:16]
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((5, 3)),
        keras.layers.LSTM(4, name="encoder"),
        keras.layers.Dense(2, activation="softmax", name="out"),
    ])
    loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(keras.optimizers.SGD(LR), loss)
    window = 8
    logged_ends = [8, 24, 40, 56]  # windows 0, 2, 4, 6
    weights = {}

    class WeightsAtWindowEnds(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step = int(self.model.optimizer.iterations.numpy())
            if step in logged_ends:
                weights[step] = self.model.get_weights()

    callback = GradientTensorBoard(
        str(tmp_path), source="probe", probe_data=(probe_x, probe_y),
        probe_batch_size=16, gradient_window=window, gradient_freq=2,
        heatmap_cells=64)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
              callbacks=[WeightsAtWindowEnds(), callback])
    series = eventfiles.load(tmp_path / "train")
    assert sorted(series[metadata.timesteps_tag("probe", "encoder")]) == (
        logged_ends)
    clone = reference.clone_with_weights(model)
    names = [str(v.path).split("/", 1)[1] for v in model.trainable_variables]
    accumulated = None
    for end in logged_ends:
        clone.set_weights(weights[end])
        gradients = reference.probe_gradient(clone, loss, probe_x, probe_y)
        accumulated = gradients if accumulated is None else [
            a + g for a, g in zip(accumulated, gradients)]
        for name, g, c in zip(names, gradients, accumulated):
            got = eventfiles.variable_stats(series, "probe", name, end)
            assert got["l2"] == pytest.approx(np.sqrt((g ** 2).sum()),
                                              rel=1e-4), (name, end)
            assert got["l2_accumulated"] == pytest.approx(
                np.sqrt((c ** 2).sum()), rel=1e-4), (name, end)
