"""A run directory that records some steps twice: each step served once.

A run is trained with windows of 4 optimizer steps (16 steps: records at 4,
8, 12, 16), then "restarted": a new model, trained from scratch for 10
steps, writes a second event file into the same run directory (records at
4, 8 and the partial window at 10). TensorBoard's Python loader keeps both
recordings of steps 4 and 8; every route must show each step once, with
the values of the second file (the later one), in step order. Expected
values come from reading each event file on its own with TensorBoard's
event reader.
"""

import glob
import math
import os

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.data import provider
from tensorboard.util import tensor_util
from werkzeug import test as werkzeug_test

from tb_gradients import GradientTensorBoard
from tb_gradients.format import heatmap
from tb_gradients.format import metadata
from tb_gradients.format import variable_stats
from tb_gradients.plugin import series as plugin_series

from tests.test_plugin_wsgi import get_json
from tests.test_plugin_wsgi import make_app

WINDOW = 4
BATCH = 4
FIRST_STEPS, SECOND_STEPS = 16, 10
RUN = "lstm/train"
LAYER = "encoder"
FIRST_ONLY = [12, 16]
REDONE = [4, 8]
ALL_STEPS = [4, 8, 10, 12, 16]


def _data(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(FIRST_STEPS * BATCH, 5, 3)).astype("float32")
    return x, (x[:, 0, :1] - x[:, 1, 1:2]).astype("float32")


def _train(run_dir, seed, steps):
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    x, y = _data(seed)
    model = keras.Sequential([
        keras.Input((5, 3)),
        keras.layers.LSTM(3, return_sequences=True, name=LAYER),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(1, name="head"),
    ])
    model.compile(keras.optimizers.SGD(0.05), "mse")
    model.fit(x[:steps * BATCH], y[:steps * BATCH], batch_size=BATCH,
              epochs=1, shuffle=False, verbose=0,
              callbacks=[GradientTensorBoard(
                  str(run_dir), source="both", probe_data=(x[:8], y[:8]),
                  timestep_samples=4, gradient_window=WINDOW,
                  heatmap_encoding="float32", histograms=False)])


def _read_file(path):
    """tag -> {step: (wall_time, value)} of one event file on its own."""
    accumulator = event_accumulator.EventAccumulator(
        path, size_guidance={event_accumulator.TENSORS: 0,
                             event_accumulator.SCALARS: 0})
    accumulator.Reload()
    series = {}
    for tag in accumulator.Tags()["tensors"]:
        for event in accumulator.Tensors(tag):
            assert event.step not in series.get(tag, {}), "a step twice in one file"
            series.setdefault(tag, {})[event.step] = (
                event.wall_time, tensor_util.make_ndarray(event.tensor_proto))
    return series


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("repeated")
    _train(root / "lstm", seed=1, steps=FIRST_STEPS)
    _train(root / "lstm", seed=2, steps=SECOND_STEPS)
    return root


@pytest.fixture(scope="module")
def files(logdir):
    """The run's two event files, in the order TensorBoard reads them."""
    paths = sorted(glob.glob(os.path.join(logdir, RUN, "events.out.tfevents.*")))
    assert len(paths) == 2, paths
    return [_read_file(path) for path in paths]


@pytest.fixture(scope="module")
def expected(files):
    """tag -> {step: value} of the latest recording of each step."""
    first, second = files
    merged = {}
    for tag in set(first) | set(second):
        steps = {}
        for series in (first, second):
            for step, (wall, value) in series.get(tag, {}).items():
                if step not in steps or wall >= steps[step][0]:
                    steps[step] = (wall, value)
        merged[tag] = {step: value for step, (_, value) in steps.items()}
    return merged


def test_the_run_records_steps_twice(files):
    first, second = files
    tag = metadata.variable_stats_tag("training", "head/kernel")
    assert sorted(first[tag]) == [4, 8, 12, 16]
    assert sorted(second[tag]) == [4, 8, 10]
    # the second file is the later recording, with other values
    for step in REDONE:
        assert second[tag][step][0] > first[tag][step][0]
        assert not np.allclose(second[tag][step][1], first[tag][step][1])


def test_runs_counts_each_step_once(client):
    runs = get_json(client, "/runs")["runs"]
    assert runs == [{"run": RUN, "sources": ["training", "probe"],
                     "window": WINDOW, "epochs": len(ALL_STEPS),
                     "errors": []}]


@pytest.mark.parametrize("source", metadata.SOURCES)
def test_variable_stats(client, expected, source):
    body = get_json(client, "/variable_stats", run=RUN, source=source)
    assert body["epochs"] == ALL_STEPS
    names = list(body["stats"])
    for variable in body["variables"]:
        tag = metadata.variable_stats_tag(source, variable["name"])
        assert len(variable["values"]) == len(ALL_STEPS)
        for step, row in zip(ALL_STEPS, variable["values"]):
            want = expected[tag][step]
            for name, got in zip(names, row):
                value = want[variable_stats.VARIABLE_STAT_NAMES.index(name)]
                if math.isfinite(value):
                    assert got == pytest.approx(value, rel=1e-12, abs=0), (
                        variable["name"], step, name)
                else:
                    assert got is None


@pytest.mark.parametrize("source", metadata.SOURCES)
def test_scalars(client, expected, source):
    body = get_json(client, "/scalars", run=RUN, source=source)
    assert body["epochs"] == ALL_STEPS
    for name, values in body["series"].items():
        want = expected[metadata.scalar_tag(source, name)]
        assert len(values) == len(ALL_STEPS)
        for step, got in zip(ALL_STEPS, values):
            value = float(np.float32(want[step]))
            if math.isfinite(value):
                assert got == pytest.approx(value, rel=1e-6), (name, step)
            else:
                assert got is None


def test_steps(client, expected):
    body = get_json(client, "/steps", run=RUN, source="training")
    want = expected[metadata.steps_tag("training")]
    assert [entry["epoch"] for entry in body["epochs"]] == ALL_STEPS
    for entry in body["epochs"]:
        table = want[entry["epoch"]]
        np.testing.assert_allclose(entry["l2"], table[:, 0], rtol=1e-6)
        np.testing.assert_allclose(entry["max_abs"], table[:, 1], rtol=1e-6)
    assert [len(entry["l2"]) for entry in body["epochs"]] == [4, 4, 2, 4, 4]


@pytest.mark.parametrize("step", REDONE + FIRST_ONLY + [10])
def test_heatmap(client, expected, step):
    variable = "head/kernel"
    body = get_json(client, "/heatmap", run=RUN, source="training",
                    variable=variable, epoch=step)
    assert body["epochs"] == ALL_STEPS and body["epoch"] == step
    want = expected[metadata.heatmap_tag("training", variable)][step]
    channels = list(heatmap.HEATMAP_CHANNELS)
    for name, channel in body["channels"].items():
        np.testing.assert_allclose(
            channel["values"], want[channels.index(name)].reshape(-1),
            rtol=1e-6)
    # the colour scale is over the latest recordings only
    stats = expected[metadata.variable_stats_tag("training", variable)]
    column = variable_stats.VARIABLE_STAT_NAMES.index("max_abs")
    assert body["channels"]["gradient_mean_abs"]["scale"] == pytest.approx(
        max(stats[s][column] for s in ALL_STEPS), rel=1e-12)


def test_timestep_layers_and_timesteps(client, expected):
    layers = get_json(client, "/timestep_layers", run=RUN)["layers"]
    assert [(layer["layer"], layer["epochs"]) for layer in layers] == [
        (LAYER, ALL_STEPS)]
    norms = expected[metadata.timestep_norms_tag("probe", LAYER)]
    for step in REDONE + [16]:
        body = get_json(client, "/timesteps", run=RUN, layer=LAYER,
                        epoch=step)
        assert body["epochs"] == ALL_STEPS
        np.testing.assert_allclose(
            body["values"], expected[metadata.timesteps_tag("probe", LAYER)][step],
            rtol=1e-6)
        np.testing.assert_allclose(body["l2"], norms[step][0], rtol=1e-6)
        summary = body["epoch_l2"]
        assert summary["epochs"] == ALL_STEPS
        np.testing.assert_allclose(
            summary["max"], [norms[s][0].max(axis=0) for s in ALL_STEPS],
            rtol=1e-6)


@pytest.mark.parametrize("source", metadata.SOURCES)
def test_gates(client, expected, source):
    body = get_json(client, "/gates", run=RUN, source=source, layer=LAYER)
    assert body["epochs"] == ALL_STEPS
    want = expected[metadata.gates_tag(source, LAYER)]
    for step, table in zip(ALL_STEPS, body["values"]):
        np.testing.assert_allclose(table, want[step], rtol=1e-12)


def test_gate_heatmap(client, expected):
    variable = f"{LAYER}/lstm_cell/kernel"
    want = expected[metadata.gate_heatmap_tag("training", variable)]
    for step in REDONE + FIRST_ONLY:
        body = get_json(client, "/gate_heatmap", run=RUN, source="training",
                        variable=variable, epoch=step)
        assert body["epochs"] == ALL_STEPS
        np.testing.assert_allclose(
            body["values"], want[step].reshape(want[step].shape[0], -1),
            rtol=1e-6)
        largest = max(float(np.nanmax(want[s])) for s in ALL_STEPS)
        assert body["scale"] == pytest.approx(largest, rel=1e-6)


def test_a_reload_after_the_restart_serves_the_new_recordings(tmp_path):
    """The plugin's caches: a step recorded again after the first answer."""
    run_dir = tmp_path / "lstm"
    _train(run_dir, seed=1, steps=FIRST_STEPS)
    app, _, reload = make_app(tmp_path)
    client = werkzeug_test.Client(app)
    before = get_json(client, "/variable_stats", run=RUN, source="training",
                      stats="l2")
    assert before["epochs"] == [4, 8, 12, 16]
    assert get_json(client, "/runs")["runs"][0]["epochs"] == 4
    _train(run_dir, seed=2, steps=SECOND_STEPS)
    reload()
    after = get_json(client, "/variable_stats", run=RUN, source="training",
                     stats="l2")
    assert after["epochs"] == ALL_STEPS
    assert get_json(client, "/runs")["runs"][0]["epochs"] == len(ALL_STEPS)
    for old, new in zip(before["variables"], after["variables"]):
        assert new["values"][0] != old["values"][0]  # step 4, recorded again
        assert new["values"][-1] == old["values"][-1]  # step 16, only once


def test_equal_wall_times_keep_the_one_read_last():
    """The tie rule of `latest_by_step` (a clock that did not move)."""
    data = [provider.TensorDatum(step=8, wall_time=5.0, numpy=np.array(1.0)),
            provider.TensorDatum(step=4, wall_time=5.0, numpy=np.array(2.0)),
            provider.TensorDatum(step=8, wall_time=5.0, numpy=np.array(3.0)),
            provider.TensorDatum(step=4, wall_time=4.0, numpy=np.array(4.0))]
    kept = plugin_series.latest_by_step(data)
    assert [(d.step, float(d.numpy)) for d in kept] == [(4, 2.0), (8, 3.0)]
