"""The recurrent-layer routes inside TensorBoard's real WSGI app.

Two recurrent runs (an LSTM and a GRU encoder, then a bidirectional GRU and
a SimpleRNN without time axis, one probe sample masked) and a run without
probe data are trained into a logdir (tests.logdirs), read by TensorBoard's
Python loader, and every answer of `/timestep_layers`, `/timesteps`,
`/gates` and `/gate_heatmap` is compared with what TensorBoard's event
reader (tests.eventfiles) finds in the same files. The per-epoch summaries
of the timestep norms are recomputed here with numpy.
"""

import json
import math
import os

import numpy as np
import pytest
from werkzeug import test as werkzeug_test

from tb_gradients.format import gates as gates_format
from tb_gradients.format import metadata
from tb_gradients.format import variable_stats as variable_stats_format

from tests import eventfiles
from tests import logdirs
from tests.test_plugin_wsgi import assert_error
from tests.test_plugin_wsgi import assert_no_request_answers_500
from tests.test_plugin_wsgi import data_routes
from tests.test_plugin_wsgi import get_json
from tests.test_plugin_wsgi import make_app
from tests.test_plugin_wsgi import request_path
from tests.test_plugin_wsgi import same

RUNS = ("lstm/train", "gru/train")
LAYERS = ("encoder", "bidirectional", "last")
GATE_LAYERS = ("encoder", "bidirectional")
TRAINING_ONLY = "training_only/train"


# -- the logdir --------------------------------------------------------------


def build_logdir(root):
    """`logdirs.recurrent_logdir` and a run without probe data (built once)."""
    root = str(root)
    marker = os.path.join(root, ".complete")
    if os.path.exists(marker):
        return root
    logdirs.recurrent_logdir(root)
    logdirs.train_recurrent_run(os.path.join(root, "training_only"),
                                epochs=2, source="training",
                                timestep_layers=[])
    with open(marker, "w") as f:
        f.write("ok")
    return root


@pytest.fixture(scope="session")
def logdir(tmp_path_factory):
    return build_logdir(tmp_path_factory.getbasetemp() / "recurrent_logdir")


@pytest.fixture(autouse=True)
def _guard_never_fires(guard_log):
    """Fails each test in which the plugin's guard answered a request the
    test did not `GuardLog.take` (as in tests.test_plugin_wsgi)."""
    yield
    guard_log.assert_silent("the test")


def content_of(series, tag):
    return json.loads(series["__metadata__"][tag].plugin_data.content)


def assert_float32_equal(json_value, stored):
    """Nested JSON numbers read back as exactly the stored float32 values."""
    stored = np.asarray(stored, dtype=np.float32)
    finite = np.isfinite(stored)
    got = np.array(json_value, dtype=object)
    assert got.shape == stored.shape
    assert all(v is None for v in got[~finite])
    values = np.array(got[finite].tolist(), dtype=np.float64)
    np.testing.assert_array_equal(values.astype(np.float32), stored[finite])


# -- /timestep_layers ---------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_timestep_layers_match_the_event_files(client, events, run):
    body = get_json(client, "/timestep_layers", run=run)
    series = events(run)
    assert body["run"] == run
    assert [entry["layer"] for entry in body["layers"]] == list(LAYERS)
    for entry in body["layers"]:
        layer = entry["layer"]
        tag = metadata.timesteps_tag("probe", layer)
        content = content_of(series, tag)
        for field in ("class", "inner_class", "return_sequences",
                      "bidirectional", "merge_mode", "direction_count",
                      "direction_names", "direction_ranges", "samples",
                      "timesteps", "channels", "time_block",
                      "channel_block"):
            assert entry[field] == content[field], (layer, field)
        assert entry["epochs"] == sorted(series[tag]) == [0, 1, 2]
        norms_tag = metadata.timestep_norms_tag("probe", layer)
        assert entry["has_time"] is (norms_tag in series)
        has_gates = layer in GATE_LAYERS
        assert entry["gates"] == {"training": has_gates, "probe": has_gates}
        for source in ("training", "probe"):
            assert (metadata.gates_tag(source, layer) in series) is has_gates
    by_layer = {entry["layer"]: entry for entry in body["layers"]}
    assert by_layer["encoder"]["recurrent_kind"] == run.split("/")[0].upper()
    assert by_layer["bidirectional"]["recurrent_kind"] == "GRU"
    assert by_layer["last"]["recurrent_kind"] is None
    assert by_layer["last"]["has_time"] is False
    assert by_layer["last"]["return_sequences"] is False


def test_timestep_layers_with_gates_only(client):
    body = get_json(client, "/timestep_layers", run=TRAINING_ONLY)
    assert [entry["layer"] for entry in body["layers"]] == list(GATE_LAYERS)
    for entry in body["layers"]:
        assert entry["has_time"] is False and entry["epochs"] == []
        assert entry["gates"] == {"training": True, "probe": False}
        assert entry["class"] is None and entry["direction_ranges"] is None
    assert [entry["recurrent_kind"] for entry in body["layers"]] == [
        "LSTM", "GRU"]


def test_timestep_layers_errors(client):
    assert_error(client, 400, "/timestep_layers", ["'run'", "None"])
    assert_error(client, 400, "/timestep_layers", ["'run'", "''"], run="")
    assert_error(client, 404, "/timestep_layers", ["run 'no-such-run'"],
                 run="no-such-run")


# -- /timesteps ---------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("layer", LAYERS)
def test_timesteps_match_the_event_files(client, events, run, layer):
    series = events(run)
    tag = metadata.timesteps_tag("probe", layer)
    norms_tag = metadata.timestep_norms_tag("probe", layer)
    content = content_of(series, tag)
    for epoch in sorted(series[tag]):
        body = get_json(client, "/timesteps", run=run, layer=layer,
                        epoch=str(epoch))
        assert (body["run"], body["layer"], body["epoch"]) == (run, layer,
                                                               epoch)
        assert body["epochs"] == sorted(series[tag])
        for field in ("class", "direction_names", "direction_ranges",
                      "samples", "timesteps", "channels", "time_block",
                      "channel_block", "merge_mode", "bidirectional"):
            assert body[field] == content[field], field
        assert_float32_equal(body["values"], series[tag][epoch])
        if norms_tag in series:
            assert_float32_equal(body["l2"], series[norms_tag][epoch][0])
            assert_float32_equal(body["valid"], series[norms_tag][epoch][1])
        else:
            assert body["l2"] is None and body["valid"] is None


def test_timesteps_latest_epoch_by_default(client):
    body = get_json(client, "/timesteps", run="lstm/train", layer="encoder")
    assert body["epoch"] == 2 and body["epochs"] == [0, 1, 2]
    assert body == get_json(client, "/timesteps", run="lstm/train",
                            layer="encoder", epoch="2")


def test_masked_timesteps_have_valid_zero(client):
    body = get_json(client, "/timesteps", run="lstm/train", layer="encoder")
    assert len(body["valid"][0]) == logdirs.RECURRENT_STEPS
    assert body["valid"][0] == [1.0] * 5 + [0.0] * 5
    assert all(v == 1.0 for row in body["valid"][1:] for v in row)
    masked = np.array(body["values"][0][5:])
    assert np.all(masked == 0.0) and body["l2"][0][5:] == [0.0] * 5
    # Pairs of timesteps averaged: the block of timesteps 4 and 5 is half
    # masked.
    body = get_json(client, "/timesteps", run="gru/train", layer="encoder")
    assert body["time_block"] == 2 and len(body["valid"][0]) == 5
    assert body["valid"][0] == [1.0, 1.0, 0.5, 0.0, 0.0]


def test_bidirectional_direction_ranges(client):
    body = get_json(client, "/timesteps", run="lstm/train",
                    layer="bidirectional")
    assert body["bidirectional"] is True and body["merge_mode"] == "concat"
    assert body["direction_names"] == ["forward", "backward"]
    assert body["direction_ranges"] == [[0, 4], [4, 8]]
    assert body["channels"] == 8
    assert all(len(step) == 8 for sample in body["values"]
               for step in sample)


def test_no_time_axis_has_no_norms(client):
    body = get_json(client, "/timesteps", run="gru/train", layer="last")
    assert body["return_sequences"] is False and body["timesteps"] == 0
    assert body["l2"] is None and body["valid"] is None
    assert body["epoch_l2"] is None
    assert np.array(body["values"]).shape == (8, 3)


def _epoch_summaries(norms):
    """mean/std/min/max over the valid samples of a (2, samples, T) tensor."""
    l2 = np.asarray(norms[0], dtype=np.float64)
    valid = np.asarray(norms[1]) > 0
    masked = np.ma.masked_array(l2, mask=~valid)
    return {"mean": masked.mean(axis=0), "std": masked.std(axis=0),
            "min": masked.min(axis=0), "max": masked.max(axis=0)}


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("layer", GATE_LAYERS)
def test_epoch_l2_recomputed_from_the_norms(client, events, run, layer):
    stored = events(run)[metadata.timestep_norms_tag("probe", layer)]
    body = get_json(client, "/timesteps", run=run, layer=layer, epoch="0")
    summary = body["epoch_l2"]
    assert summary["epochs"] == sorted(stored) == [0, 1, 2]
    for position, epoch in enumerate(summary["epochs"]):
        want = _epoch_summaries(stored[epoch])
        for name, figures in want.items():
            got = summary[name][position]
            assert len(got) == stored[epoch].shape[2]
            np.testing.assert_allclose(got, figures.filled(np.nan),
                                       rtol=1e-6, atol=0, err_msg=name)


def test_epoch_l2_leaves_masked_samples_out(client, events):
    stored = events("lstm/train")[metadata.timestep_norms_tag("probe",
                                                              "encoder")]
    body = get_json(client, "/timesteps", run="lstm/train", layer="encoder")
    for position, epoch in enumerate(body["epoch_l2"]["epochs"]):
        l2 = stored[epoch][0].astype(np.float64)
        # Timestep 7 is masked in sample 0 only (its norm there is 0).
        assert l2[0, 7] == 0.0
        assert body["epoch_l2"]["min"][position][7] == pytest.approx(
            l2[1:, 7].min(), rel=1e-6)
        assert body["epoch_l2"]["mean"][position][7] == pytest.approx(
            l2[1:, 7].mean(), rel=1e-6)


def test_timesteps_errors(client):
    base = {"run": "lstm/train", "layer": "encoder"}
    assert_error(client, 400, "/timesteps", ["'run'", "None"],
                 layer="encoder")
    assert_error(client, 400, "/timesteps", ["'layer'", "None"],
                 run="lstm/train")
    assert_error(client, 400, "/timesteps", ["'layer'", "''"],
                 run="lstm/train", layer="")
    assert_error(client, 400, "/timesteps", ["epoch", "'x'"], **base,
                 epoch="x")
    assert_error(client, 400, "/timesteps", ["epoch", "'1.5'"], **base,
                 epoch="1.5")
    assert_error(client, 404, "/timesteps", ["epoch", "99", "epoch 99"],
                 **base, epoch="99")
    assert_error(client, 404, "/timesteps",
                 ["layer 'head'", "run 'lstm/train'"],
                 run="lstm/train", layer="head")
    assert_error(client, 404, "/timesteps", ["run 'no-such-run'"],
                 run="no-such-run", layer="encoder")
    assert_error(client, 404, "/timesteps", ["layer 'encoder'"],
                 run=TRAINING_ONLY, layer="encoder")


# -- /gates -------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("source", metadata.SOURCES)
@pytest.mark.parametrize("layer", GATE_LAYERS)
def test_gates_match_the_event_files(client, events, run, source, layer):
    series = events(run)
    tag = metadata.gates_tag(source, layer)
    content = content_of(series, tag)
    body = get_json(client, "/gates", run=run, source=source, layer=layer)
    assert (body["run"], body["source"], body["layer"]) == (run, source,
                                                            layer)
    assert body["recurrent_kind"] == content["recurrent_kind"]
    assert body["gates"] == content["gates"]
    assert body["stats"] == list(gates_format.GATE_STAT_NAMES)
    assert body["rows"] == content["rows"]
    assert body["epochs"] == sorted(series[tag])
    for epoch, table in zip(body["epochs"], body["values"]):
        stored = series[tag][epoch]
        assert stored.dtype == np.float64
        assert np.array(table).shape == stored.shape
        for got, want in zip(np.array(table, dtype=object).reshape(-1),
                             stored.reshape(-1)):
            assert same(got, want)


def test_gates_of_a_bidirectional_layer(client):
    body = get_json(client, "/gates", run="lstm/train", source="training",
                    layer="bidirectional")
    assert body["gates"] == ["update", "reset", "candidate"]
    assert [(r["direction"], r["role"]) for r in body["rows"]] == [
        (direction, role) for direction in ("forward", "backward")
        for role in ("kernel", "recurrent_kernel", "bias")]
    assert body["rows"][0]["variable"] == (
        "bidirectional/forward_gru/gru_cell/kernel")


def test_gates_errors(client):
    base = {"run": "lstm/train", "source": "training", "layer": "encoder"}
    for missing in base:
        params = {k: v for k, v in base.items() if k != missing}
        assert_error(client, 400, "/gates", [repr(missing), "None"],
                     **params)
    assert_error(client, 400, "/gates", ["source", "'gradient'"],
                 **dict(base, source="gradient"))
    assert_error(client, 404, "/gates", ["layer 'last'"],
                 **dict(base, layer="last"))
    assert_error(client, 404, "/gates", ["run 'no-such-run'"],
                 **dict(base, run="no-such-run"))
    assert_error(client, 404, "/gates", ["source 'probe'"], run=TRAINING_ONLY,
                 source="probe", layer="encoder")


# -- /gate_heatmap ------------------------------------------------------------


GATE_VARIABLES = ("encoder/lstm_cell/kernel", "encoder/lstm_cell/bias",
                  "bidirectional/backward_gru/gru_cell/recurrent_kernel")


@pytest.mark.parametrize("source", metadata.SOURCES)
@pytest.mark.parametrize("variable", GATE_VARIABLES)
def test_gate_heatmap_matches_the_event_files(client, events, source,
                                              variable):
    series = events("lstm/train")
    tag = metadata.gate_heatmap_tag(source, variable)
    content = content_of(series, tag)
    stored = series[tag]
    scale = max(float(t[np.isfinite(t)].max()) for t in stored.values())
    for epoch in sorted(stored):
        body = get_json(client, "/gate_heatmap", run="lstm/train",
                        source=source, variable=variable, epoch=str(epoch))
        assert body["epoch"] == epoch and body["epochs"] == sorted(stored)
        assert body["layer"] == content["layer"]
        assert body["recurrent_kind"] == content["recurrent_kind"]
        assert body["gates"] == content["gates"]
        assert body["block"] == content["block"]
        gates, rows, cols = stored[epoch].shape
        assert (body["rows"], body["cols"]) == (rows, cols)
        assert len(body["values"]) == gates == len(body["gates"])
        assert_float32_equal(body["values"],
                             stored[epoch].reshape(gates, rows * cols))
        assert np.float32(body["scale"]) == np.float32(scale)


def test_gate_heatmap_latest_epoch_by_default(client):
    body = get_json(client, "/gate_heatmap", run="gru/train", source="probe",
                    variable="encoder/gru_cell/bias")
    assert body["epoch"] == 2 and body["gates"] == ["update", "reset",
                                                    "candidate"]
    assert (body["rows"], body["cols"]) == (2, 6)  # reset_after: (2, 3*6)


def test_gate_heatmap_errors(client):
    base = {"run": "lstm/train", "source": "training",
            "variable": "encoder/lstm_cell/kernel"}
    for missing in base:
        params = {k: v for k, v in base.items() if k != missing}
        assert_error(client, 400, "/gate_heatmap", [repr(missing), "None"],
                     **params)
    assert_error(client, 400, "/gate_heatmap", ["epoch", "'x'"], **base,
                 epoch="x")
    assert_error(client, 404, "/gate_heatmap", ["epoch", "7", "epoch 7"],
                 **base, epoch="7")
    assert_error(client, 404, "/gate_heatmap", ["variable 'head/kernel'"],
                 **dict(base, variable="head/kernel"))
    assert_error(client, 404, "/gate_heatmap", ["run 'no-such-run'"],
                 **dict(base, run="no-such-run"))


# -- /variable_stats?stats= ---------------------------------------------------


def test_variable_stats_selected_columns(client, events):
    names = ["mean", "std", "max_abs", "l2", "mean_abs", "size"]
    body = get_json(client, "/variable_stats", run="gru/train",
                    source="probe", stats=",".join(names))
    full = get_json(client, "/variable_stats", run="gru/train",
                    source="probe")
    series = events("gru/train")
    assert body["stats"] == names
    assert full["stats"] == list(variable_stats_format.VARIABLE_STAT_NAMES)
    assert body["epochs"] == full["epochs"]
    for variable, whole in zip(body["variables"], full["variables"]):
        assert variable["name"] == whole["name"]
        assert variable["highest_gradient"] == whole["highest_gradient"]
        assert variable["highest_accumulated"] == whole[
            "highest_accumulated"]
        for epoch, vector in zip(body["epochs"], variable["values"]):
            stored = eventfiles.variable_stats(series, "probe",
                                               variable["name"], epoch)
            assert [same(v, stored[n]) for n, v in zip(names, vector)] == [
                True] * len(names)
            # Integral statistics are JSON integers.
            assert isinstance(vector[-1], int)


def test_variable_stats_repeated_and_unknown_names(client):
    body = get_json(client, "/variable_stats", run="gru/train",
                    source="training", stats="l2,l2,mean")
    assert body["stats"] == ["l2", "mean"]
    assert all(len(v) == 2 for variable in body["variables"]
               for v in variable["values"])
    assert_error(client, 400, "/variable_stats", ["'stats'", "'l2,bogus'",
                                                  "bogus"],
                 run="gru/train", source="training", stats="l2,bogus")
    assert_error(client, 400, "/variable_stats", ["'stats'", "'l2,'"],
                 run="gru/train", source="training", stats="l2,")


# -- requests and data that must not answer 500 ------------------------------


RECURRENT_ROUTES = ("/timestep_layers", "/timesteps", "/gates",
                    "/gate_heatmap")


def test_no_request_answers_500(client, guard_log):
    """Every route on recurrent runs, the recurrent ones deepest."""
    assert set(RECURRENT_ROUTES) <= set(data_routes())
    bases = ({"run": "lstm/train", "source": "probe", "layer": "encoder",
              "variable": "encoder/lstm_cell/kernel", "epoch": "1"},
             {"run": "gru/train", "source": "training", "layer": "last",
              "variable": "bidirectional/backward_gru/gru_cell/bias",
              "stats": "l2", "points": "2"},
             {"run": TRAINING_ONLY, "source": "probe", "layer": "encoder",
              "variable": "encoder/lstm_cell/kernel"})
    combined = []
    for value in ("", "x", "lstm/train", "encoder", "../../etc/passwd",
                  "\u00e9\u0000", "%", "((", "1e999", "-0", "9" * 40):
        combined += [{"run": value, "layer": "encoder", "source": "training",
                      "variable": "encoder/lstm_cell/kernel"},
                     {"run": "lstm/train", "layer": value, "source": value,
                      "variable": value, "epoch": value},
                     {"run": "lstm/train", "layer": "encoder",
                      "source": "probe",
                      "variable": "encoder/lstm_cell/kernel",
                      "epoch": value}]
    assert_no_request_answers_500(client, guard_log, bases, combined)


def _write_odd_runs(root):
    """Non-finite gradients in a well-formed run; malformed tensors."""
    import tensorflow as tf

    description = {"layer": "rec", "class": "LSTM", "inner_class": "LSTM",
                   "return_sequences": True, "bidirectional": False,
                   "merge_mode": None, "direction_count": 1,
                   "direction_names": ["forward"],
                   "direction_ranges": [[0, 2]], "samples": 2,
                   "timesteps": 3, "channels": 2, "time_block": 1,
                   "channel_block": 1}
    gates = {"layer": "rec", "recurrent_kind": "LSTM",
             "gates": ["input", "forget", "cell", "output"],
             "rows": [{"direction": "forward", "role": "kernel",
                       "variable": "rec/lstm_cell/kernel"}],
             "stats": list(gates_format.GATE_STAT_NAMES)}
    heatmap = {"variable": "rec/lstm_cell/kernel", "layer": "rec",
               "recurrent_kind": "LSTM", "block": [1, 1],
               "gates": ["input", "forget", "cell", "output"]}

    def write(run, timesteps, norms, table, planes):
        with tf.summary.create_file_writer(str(root / run)).as_default():
            tf.summary.write(
                metadata.timesteps_tag("probe", "rec"), timesteps, step=0,
                metadata=metadata.create_summary_metadata(
                    metadata.KIND_TIMESTEPS, "probe", **description))
            tf.summary.write(
                metadata.timestep_norms_tag("probe", "rec"), norms, step=0,
                metadata=metadata.create_summary_metadata(
                    metadata.KIND_TIMESTEP_NORMS, "probe", **description))
            tf.summary.write(
                metadata.gates_tag("training", "rec"), table, step=0,
                metadata=metadata.create_summary_metadata(
                    metadata.KIND_GATES, "training", **gates))
            tf.summary.write(
                metadata.gate_heatmap_tag("training", "rec/lstm_cell/kernel"),
                planes, step=0, metadata=metadata.create_summary_metadata(
                    metadata.KIND_GATE_HEATMAP, "training", **heatmap))

    values = np.zeros((2, 3, 2), np.float32)
    values[1, 2, 0] = np.nan
    values[1, 1, 1] = np.inf
    norms = np.stack([np.array([[1, 2, 3], [4, np.nan, 6]], np.float32),
                      np.ones((2, 3), np.float32)])
    table = np.zeros((1, 4, 3))
    table[0, 1, 0] = np.nan
    planes = np.ones((4, 2, 3), np.float32)
    planes[2, 1, 1] = np.inf
    write("nonfinite", values, norms, table, planes)
    write("broken", tf.zeros([4], tf.float32), tf.zeros([3, 2], tf.float32),
          tf.zeros([2, 4, 3], tf.float64), tf.zeros([3, 2, 3], tf.float32))


def test_non_finite_values_are_null(tmp_path):
    _write_odd_runs(tmp_path)
    app, _, _ = make_app(tmp_path)
    client = werkzeug_test.Client(app)
    body = get_json(client, "/timesteps", run="nonfinite", layer="rec")
    assert body["values"][1][2][0] is None and body["values"][1][1][1] is None
    assert body["values"][0] == [[0.0, 0.0]] * 3
    assert body["l2"] == [[1.0, 2.0, 3.0], [4.0, None, 6.0]]
    assert body["epoch_l2"]["mean"] == [[2.5, None, 4.5]]
    assert body["epoch_l2"]["min"] == [[1.0, None, 3.0]]
    body = get_json(client, "/gates", run="nonfinite", source="training",
                    layer="rec")
    assert body["values"][0][0][1][0] is None
    body = get_json(client, "/gate_heatmap", run="nonfinite",
                    source="training", variable="rec/lstm_cell/kernel")
    assert body["values"][2][4] is None and body["scale"] == 1.0
    layers = get_json(client, "/timestep_layers", run="nonfinite")["layers"]
    assert [entry["layer"] for entry in layers] == ["rec"]


def test_malformed_recurrent_data_is_404(tmp_path, guard_log):
    """Malformed tensors are a typed 404 naming run, tag, step and the
    layout expected, for exactly the requests that read them, each logged
    once; the layer listing only needs their metadata."""
    _write_odd_runs(tmp_path)
    app, _, _ = make_app(tmp_path)
    client = werkzeug_test.Client(app)
    damaged = [("/timesteps", [metadata.timesteps_tag("probe", "rec"),
                               "expected a float tensor of shape (samples, "
                               "timesteps, channels)"],
                {"run": "broken", "layer": "rec"}),
               ("/gates", [metadata.gates_tag("training", "rec"),
                           "expected a float table of shape"],
                {"run": "broken", "source": "training", "layer": "rec"}),
               ("/gate_heatmap", [metadata.gate_heatmap_tag(
                   "training", "rec/lstm_cell/kernel"),
                   "expected a float tensor of shape (4, rows, cols)"],
                {"run": "broken", "source": "training",
                 "variable": "rec/lstm_cell/kernel"})]
    for _ in range(2):
        for route, words, params in damaged:
            assert_error(client, 404, route, ["run 'broken'", "step 0"]
                         + words, **params)
    guard_log.assert_silent("reading malformed recurrent series")
    assert len(guard_log.read_errors) == len(damaged), guard_log.read_errors
    body = get_json(client, "/timestep_layers", run="broken")
    assert body["layers"][0]["epochs"] == [0]
    assert math.isfinite(body["layers"][0]["samples"])


def test_float32_json_is_the_shortest_exact_text():
    from tb_gradients import json_values
    values = np.array([0.1, np.nan, np.inf, -np.inf, 1e-40, 3.4e38, -0.0,
                       1.0, 1e20, 2.0**-149], np.float32)
    text = json_values.float32_json(values)
    assert text == ("[0.1,null,null,null,1e-40,3.4e+38,-0.0,1.0,1e+20,"
                    "1e-45]")
    cube = (np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7) ** 3
    assert_float32_equal(json.loads(json_values.float32_json(cube)), cube)
    assert json_values.float32_json(np.zeros((2, 0))) == "[[],[]]"
    assert json_values.float32_json(np.float32(np.nan)) == "null"
    body = json_values.dumps({"b": 1, "a": json_values.JSONText("[1.5]")})
    assert json.loads(body) == {"a": [1.5], "b": 1}


def test_timestep_data_alone_does_not_make_probe_a_source(tmp_path):
    """Training source + probe data: probe timesteps, but no probe stats."""
    logdirs.train_recurrent_run(tmp_path / "run", epochs=1, source="training",
                                with_probe=True)
    client = werkzeug_test.Client(make_app(tmp_path)[0])
    runs = get_json(client, "/runs")["runs"]
    assert [(r["run"], r["sources"]) for r in runs] == [("run/train",
                                                         ["training"])]
    layers = get_json(client, "/timestep_layers", run="run/train")["layers"]
    assert any(layer["has_time"] for layer in layers)
