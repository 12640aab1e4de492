"""The plugin's HTTP routes inside TensorBoard's real WSGI app.

Real runs are trained into a logdir (tests.logdirs), TensorBoard's own flag
parser and Python loader (`LocalDataIngester`: EventMultiplexer +
MultiplexerDataProvider) read it, and every answer is compared with what
TensorBoard's event reader (tests.eventfiles) finds in the same files.
"""

import json
import logging
import math
import os
import time
import urllib.parse

import numpy as np
import pytest
from tensorboard import program
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_ingester
from tensorboard.plugins import base_plugin
from tensorboard.plugins.core import core_plugin
from werkzeug import test as werkzeug_test

from tb_gradients import plugin
from tb_gradients.format import heatmap
from tb_gradients.format import metadata
from tb_gradients.format import scalars
from tb_gradients.format import variable_stats as variable_stats_format
from tb_gradients.plugin import params as plugin_params
from tb_gradients.plugin import reading as plugin_reading
from tb_gradients.plugin import routes as plugin_routes

from tests import eventfiles
from tests import logdirs

HOSTILE = "<img src=x onerror=window.__pwned=1>"
LONG_EPOCHS = 150
PREFIX = "/data/plugin/gradients"


# -- the logdir (shared with test_tensorboard_server.py) ---------------------


def build_logdir(root):
    """The standard runs, a 150-epoch run and a float32-heatmap run.

    Built once per session: a marker file says the training finished, so a
    second module asking for the same root reuses it.
    """
    root = str(root)
    marker = os.path.join(root, ".complete")
    if os.path.exists(marker):
        return root
    logdirs.standard_logdir(root)
    logdirs.train_mlp_run(os.path.join(root, "long"), epochs=LONG_EPOCHS,
                          source="training", heatmap_cells=64,
                          histograms=False)
    logdirs.train_mlp_run(os.path.join(root, "float"), epochs=2,
                          source="training", heatmap_encoding="float32",
                          heatmap_cells=16, histograms=False)
    with open(marker, "w") as f:
        f.write("ok")
    return root


def shared_logdir(tmp_path_factory):
    return build_logdir(tmp_path_factory.getbasetemp() / "gradients_logdir")


@pytest.fixture(scope="session")
def logdir(tmp_path_factory):
    return shared_logdir(tmp_path_factory)


def parse_flags(logdir, *extra_argv, loader=None):
    """Flags as `tensorboard` parses them, `fix_flags` of every loader run."""
    tensorboard = program.TensorBoard(plugins=[
        core_plugin.CorePluginLoader(), loader or plugin.GradientsLoader()])
    tensorboard.configure(argv=[
        "tensorboard", "--logdir", str(logdir), "--load_fast=false",
        "--reload_task=blocking", "--reload_interval=0", *extra_argv])
    return tensorboard.flags


def make_app(logdir, *extra_argv, loader=None):
    """TensorBoard's WSGI app over the Python loader, flags parsed by TB.

    Returns:
      ``(app, flags, reload)``; ``reload()`` reads the logdir again, as
      TensorBoard's reload thread does between requests.
    """
    loader = loader or plugin.GradientsLoader()
    flags = parse_flags(logdir, *extra_argv, loader=loader)
    ingester = data_ingester.LocalDataIngester(flags)
    ingester.start()
    app = application.TensorBoardWSGIApp(
        flags, [core_plugin.CorePluginLoader(), loader],
        ingester.data_provider)
    multiplexer = ingester.deprecated_multiplexer

    def reload():
        multiplexer.AddRunsFromDirectory(str(logdir))
        multiplexer.Reload()

    return app, flags, reload


def _reject_constant(name):
    raise AssertionError(f"non-strict JSON constant {name!r} in a response")


def strict_json(response):
    return json.loads(response.get_data(as_text=True),
                      parse_constant=_reject_constant)


def request_path(route, **params):
    """The path and query string `get` asks for (as the guard logs it)."""
    query = urllib.parse.urlencode(params)
    return f"{PREFIX}{route}" + (f"?{query}" if query else "")


def get(client, route, **params):
    return client.get(request_path(route, **params))


def get_json(client, route, **params):
    response = get(client, route, **params)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return strict_json(response)


def assert_error(client, status, route, words=(), guarded=False, **params):
    """Asserts the status and words of an error answer.

    Args:
      guarded: Whether the answer is expected from the plugin's last-resort
        guard (`plugin.routes._guarded`, damaged data only). By default it must be
        a typed error raised on purpose by the route, whose message the
        guard's cannot pass for even when it quotes the same words.
    """
    response = get(client, route, **params)
    assert response.status_code == status, response.get_data(as_text=True)
    text = response.get_data(as_text=True)
    assert (plugin_routes.GUARD_NOT_FOUND in text) is guarded, text
    for word in words:
        assert word in text, text
    return text


class GuardLog(logging.Handler):
    """The requests the plugin's last-resort guard answered (`plugin.routes._guarded`
    logs each one), collected while attached with ``with``.

    On intact data the guard never fires: every bad request is a typed error
    of the route. Tests of damaged data `take` the requests they expect it
    to have answered; whatever is left is a crash in route code.
    """

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self._fired = []
        self._level = None
        self.read_errors = []  # the messages of read errors logged

    def emit(self, record):
        if record.msg == plugin_routes.GUARD_WARNING:
            error = record.exc_info[1] if record.exc_info else None
            self._fired.append((record.args[0], error))
        if record.msg == plugin_reading.READ_ERROR_WARNING:
            assert record.exc_info is None, "a read error logs no traceback"
            self.read_errors.append(record.getMessage())

    def __enter__(self):
        self._level = plugin_routes.logger.level
        if not plugin_routes.logger.isEnabledFor(logging.WARNING):
            plugin_routes.logger.setLevel(logging.WARNING)
        plugin_routes.logger.addHandler(self)
        return self

    def __exit__(self, *exc_info):
        plugin_routes.logger.removeHandler(self)
        plugin_routes.logger.setLevel(self._level)

    def take(self):
        """The request paths answered by the guard so far (then forgotten)."""
        fired, self._fired = self._fired, []
        return [path for path, _ in fired]

    def assert_silent(self, during=""):
        """Fails, naming each request and its error, if the guard fired."""
        fired, self._fired = self._fired, []
        assert not fired, "the guard answered %s%s" % (
            "; ".join("%s (%r)" % item for item in fired),
            " during %s" % (during,) if during else "")


@pytest.fixture(autouse=True)
def _guard_never_fires(guard_log):
    """Fails each test in which the plugin's guard answered a request the
    test did not `GuardLog.take`: on intact data that is a crash in route
    code, however it was answered."""
    yield
    guard_log.assert_silent("the test")


def same(json_value, stored):
    """A JSON value equals a stored float (null for non-finite)."""
    stored = float(stored)
    if not math.isfinite(stored):
        return json_value is None
    return json_value is not None and math.isclose(json_value, stored,
                                                   rel_tol=1e-12, abs_tol=0)


# -- flags -------------------------------------------------------------------


def test_fix_flags_keeps_every_gradients_sample(logdir):
    _, flags, _ = make_app(logdir)
    assert flags.samples_per_plugin[metadata.PLUGIN_NAME] == 0


def test_fix_flags_respects_the_user_value(logdir):
    app, flags, _ = make_app(logdir,
                             "--samples_per_plugin=gradients=5,images=3")
    assert flags.samples_per_plugin == {"gradients": 5, "images": 3}
    body = get_json(werkzeug_test.Client(app), "/heatmap", run="long/train",
                    source="training", variable="dense_0/kernel")
    assert len(body["epochs"]) == 5


def test_fix_flags_accepts_a_string_value():
    class Flags:
        samples_per_plugin = "scalars=7"

    flags = Flags()
    plugin.GradientsLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {"scalars": 7, "gradients": 0}


# -- /runs -------------------------------------------------------------------


def test_runs(client):
    body = get_json(client, "/runs")
    runs = {entry["run"]: entry for entry in body["runs"]}
    assert [entry["run"] for entry in body["runs"]] == sorted(runs)
    assert runs["tanh/train"] == {"run": "tanh/train",
                                  "sources": ["training", "probe"],
                                  "window": "epoch", "epochs": 4,
                                  "errors": []}
    assert runs["exploding/train"]["sources"] == ["training"]
    assert runs["exploding/train"]["epochs"] == 3
    assert runs["long/train"]["epochs"] == LONG_EPOCHS
    assert runs[f"{HOSTILE}/train"]["epochs"] == 2


def test_runs_only_lists_runs_with_gradient_data(tmp_path, logdir):
    import shutil

    import tensorflow as tf

    shutil.copytree(os.path.join(logdir, "float"), tmp_path / "float")
    with tf.summary.create_file_writer(str(tmp_path / "plain")).as_default():
        tf.summary.scalar("loss", 1.0, step=0)
    app, _, _ = make_app(tmp_path)
    body = get_json(werkzeug_test.Client(app), "/runs")
    assert [entry["run"] for entry in body["runs"]] == ["float/train"]


# -- /variables --------------------------------------------------------------


def test_variables(client, events):
    body = get_json(client, "/variables", run="tanh/train", source="probe")
    assert body["run"] == "tanh/train" and body["source"] == "probe"
    names = [v["name"] for v in body["variables"]]
    assert names == ["dense_0/kernel", "dense_0/bias", "dense_1/kernel",
                     "dense_1/bias", "output/kernel", "output/bias"]
    assert [v["index"] for v in body["variables"]] == list(range(6))
    first = body["variables"][0]
    assert first == {"name": "dense_0/kernel", "layer": "dense_0", "index": 0,
                     "shape": [6, 8], "size": 48, "heatmap": True,
                     "depth": None, "role": None}
    assert body["structure"] is False  # two hidden layers repeat nothing
    stored = events("tanh/train")["__metadata__"]
    for variable in body["variables"]:
        tag = metadata.variable_stats_tag("probe", variable["name"])
        content = json.loads(stored[tag].plugin_data.content)
        assert variable["shape"] == content["shape"]
        assert variable["layer"] == content["layer"]


def test_variables_without_heatmaps(logdir, tmp_path):
    logdirs.train_mlp_run(tmp_path / "plain", epochs=1, source="training",
                          layers=1, heatmap_cells=0, histograms=False)
    app, _, _ = make_app(tmp_path)
    body = get_json(werkzeug_test.Client(app), "/variables",
                    run="plain/train", source="training")
    assert [v["heatmap"] for v in body["variables"]] == [False] * 4
    assert_error(werkzeug_test.Client(app), 404, "/heatmap", ["heatmap"],
                 run="plain/train", source="training",
                 variable="dense_0/kernel")


# -- /scalars ----------------------------------------------------------------


def test_scalars_match_the_event_files(client, events):
    for source in ("training", "probe"):
        body = get_json(client, "/scalars", run="relu/train", source=source)
        series = events("relu/train")
        assert body["epochs"] == [0, 1, 2, 3]
        expected = [name for name in scalars.GLOBAL_STAT_NAMES
                    if source == "training"
                    or name not in scalars.TRAINING_ONLY_STATS]
        assert sorted(body["series"]) == sorted(expected)
        for name, values in body["series"].items():
            for epoch, value in zip(body["epochs"], values):
                assert same(value, eventfiles.scalar(series, source, name,
                                                     epoch)), (name, epoch)


def test_scalars_of_the_nan_run(client, events):
    body = get_json(client, "/scalars", run="exploding/train",
                    source="training")
    series = events("exploding/train")
    for name, values in body["series"].items():
        for epoch, value in zip(body["epochs"], values):
            assert same(value, eventfiles.scalar(series, "training", name,
                                                 epoch))
    assert body["series"]["nan_count"][0] > 0


def test_scalars_of_every_epoch(client):
    body = get_json(client, "/scalars", run="long/train", source="training")
    assert body["epochs"] == list(range(LONG_EPOCHS))
    assert all(len(v) == LONG_EPOCHS for v in body["series"].values())


# -- /variable_stats ---------------------------------------------------------


def test_variable_stats_match_the_event_files(client, events):
    body = get_json(client, "/variable_stats", run="tanh/train",
                    source="training")
    series = events("tanh/train")
    assert body["stats"] == list(variable_stats_format.VARIABLE_STAT_NAMES)
    assert body["epochs"] == [0, 1, 2, 3]
    for variable in body["variables"]:
        for epoch, vector in zip(body["epochs"], variable["values"]):
            stored = eventfiles.variable_stats(series, "training",
                                               variable["name"], epoch)
            assert len(vector) == len(body["stats"])
            for name, value in zip(body["stats"], vector):
                assert same(value, stored[name]), (variable["name"], name)


def test_variable_stats_highest_curves(client, events):
    body = get_json(client, "/variable_stats", run="tanh/train",
                    source="probe")
    series = events("tanh/train")
    for variable in body["variables"]:
        rows = [eventfiles.variable_stats(series, "probe", variable["name"],
                                          epoch) for epoch in body["epochs"]]
        scale = max(row["accumulated_max_abs"] for row in rows) or 1.0
        for i, row in enumerate(rows):
            assert math.isclose(variable["highest_gradient"][i],
                                row["max_abs"] / scale)
            assert math.isclose(variable["highest_accumulated"][i],
                                row["accumulated_max_abs"] / scale)
        assert max(variable["highest_accumulated"]) == pytest.approx(1.0)


def test_variable_stats_of_the_nan_run(client, events):
    body = get_json(client, "/variable_stats", run="exploding/train",
                    source="training")
    series = events("exploding/train")
    nan_count = body["stats"].index("nan_count")
    assert any(vector[nan_count] for v in body["variables"]
               for vector in v["values"])
    assert any(value is None for v in body["variables"]
               for vector in v["values"] for value in vector)
    for variable in body["variables"]:
        for epoch, vector in zip(body["epochs"], variable["values"]):
            stored = eventfiles.variable_stats(series, "training",
                                               variable["name"], epoch)
            assert all(same(value, stored[name])
                       for name, value in zip(body["stats"], vector))


def test_variable_stats_every_epoch(client):
    body = get_json(client, "/variable_stats", run="long/train",
                    source="training")
    assert body["epochs"] == list(range(LONG_EPOCHS))
    for variable in body["variables"]:
        assert len(variable["values"]) == LONG_EPOCHS
        assert len(variable["highest_gradient"]) == LONG_EPOCHS
        assert all(vector is not None for vector in variable["values"])


def test_variable_stats_filter(client):
    body = get_json(client, "/variable_stats", run="tanh/train",
                    source="training", filter="kernel$")
    assert [v["name"] for v in body["variables"]] == [
        "dense_0/kernel", "dense_1/kernel", "output/kernel"]
    body = get_json(client, "/variable_stats", run="tanh/train",
                    source="training", filter="^no such variable$")
    assert body["variables"] == [] and body["epochs"] == []


def test_variable_stats_invalid_filter(client):
    text = assert_error(client, 400, "/variable_stats", ["filter", "'(('"],
                        run="tanh/train", source="training", filter="((")
    assert "regular expression" in text


# -- points, start, end: min/max envelopes of long series --------------------


def _buckets(epochs, points):
    """The documented bucketing, computed here: ``[[epochs of bucket]]``."""
    first, last = epochs[0], epochs[-1]
    groups = {}
    for epoch in epochs:
        groups.setdefault((epoch - first) * (points - 1) // (last - first),
                          []).append(epoch)
    return [groups[key] for key in sorted(groups)]


def _finite_min_max(values):
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return None, None
    return float(values.min()), float(values.max())


def _check_envelope(body, points, epochs, expected):
    """``expected(name, epoch) -> {column: value}`` of one variable (or the
    scalars); checks every bucket's min and max against numpy."""
    assert body["epochs"] == epochs
    buckets = _buckets(epochs, points)
    assert buckets[-1] == [epochs[-1]]  # the last epoch alone
    assert body["buckets"] == {"first": [b[0] for b in buckets],
                               "last": [b[-1] for b in buckets]}
    return buckets


@pytest.mark.parametrize("points, start, end", [
    (10, None, None), (7, 20, 99), (2, None, 60)])
def test_variable_stats_envelope_matches_the_event_files(client, events,
                                                         points, start, end):
    names = ["max_abs", "mean", "l2"]
    params = {"points": points}
    params.update({k: v for k, v in (("start", start), ("end", end))
                   if v is not None})
    body = get_json(client, "/variable_stats", run="long/train",
                    source="training", stats=",".join(names), **params)
    series = events("long/train")
    epochs = [e for e in range(LONG_EPOCHS)
              if (start is None or e >= start) and (end is None or e <= end)]
    buckets = _check_envelope(body, points, epochs, None)
    assert body["stats"] == names
    assert len(body["variables"]) == 6
    for variable in body["variables"]:
        assert "values" not in variable
        rows = {e: eventfiles.variable_stats(series, "training",
                                             variable["name"], e)
                for e in range(LONG_EPOCHS)}
        # The highest-gradient curves are divided by S over *all* epochs.
        scale = max(row["accumulated_max_abs"] for row in rows.values()) \
            or 1.0
        for k, bucket in enumerate(buckets):
            for column, name in enumerate(names):
                low, high = _finite_min_max([rows[e][name] for e in bucket])
                assert variable["min"]["values"][k][column] == low
                assert variable["max"]["values"][k][column] == high
            for key, stat in (("highest_gradient", "max_abs"),
                              ("highest_accumulated", "accumulated_max_abs")):
                low, high = _finite_min_max(
                    [rows[e][stat] / scale for e in bucket])
                assert variable["min"][key][k] == low
                assert variable["max"][key][k] == high


def test_variable_stats_envelope_of_the_nan_run(client, events):
    body = get_json(client, "/variable_stats", run="exploding/train",
                    source="training", points=2)
    series = events("exploding/train")
    buckets = _check_envelope(body, 2, [0, 1, 2], None)
    nan_seen = False
    for variable in body["variables"]:
        for k, bucket in enumerate(buckets):
            for column, name in enumerate(body["stats"]):
                values = [eventfiles.variable_stats(
                    series, "training", variable["name"], e)[name]
                    for e in bucket]
                nan_seen |= not all(map(math.isfinite, values))
                low, high = _finite_min_max(values)
                assert variable["min"]["values"][k][column] == low
                assert variable["max"]["values"][k][column] == high
    assert nan_seen


def test_variable_stats_range_at_full_resolution(client, events):
    """At most ``points`` epochs in the range: every epoch, as without
    ``points``."""
    body = get_json(client, "/variable_stats", run="long/train",
                    source="training", points=10, start=40, end=49)
    whole = get_json(client, "/variable_stats", run="long/train",
                     source="training")
    assert body["buckets"] is None and whole["buckets"] is None
    assert body["epochs"] == list(range(40, 50))
    for variable, full in zip(body["variables"], whole["variables"]):
        assert variable["values"] == full["values"][40:50]
        assert variable["highest_gradient"] == \
            full["highest_gradient"][40:50]
    one = get_json(client, "/variable_stats", run="long/train",
                   source="training", start=149, end=149, stats="max_abs")
    assert one["epochs"] == [149]
    empty = get_json(client, "/variable_stats", run="long/train",
                     source="training", start=500)
    assert empty["epochs"] == [] and all(
        v["values"] == [] for v in empty["variables"])


@pytest.mark.parametrize("points, start, end", [(8, None, None),
                                                 (5, 30, 120)])
def test_scalars_envelope_matches_the_event_files(client, events, points,
                                                  start, end):
    params = {"points": points}
    params.update({k: v for k, v in (("start", start), ("end", end))
                   if v is not None})
    body = get_json(client, "/scalars", run="long/train", source="training",
                    **params)
    series = events("long/train")
    epochs = [e for e in range(LONG_EPOCHS)
              if (start is None or e >= start) and (end is None or e <= end)]
    buckets = _check_envelope(body, points, epochs, None)
    assert "series" not in body
    assert sorted(body["min"]) == sorted(body["max"])
    assert "norm" in body["min"]
    for name in body["min"]:
        for k, bucket in enumerate(buckets):
            low, high = _finite_min_max(
                [eventfiles.scalar(series, "training", name, e)
                 for e in bucket])
            assert body["min"][name][k] == low, (name, k)
            assert body["max"][name][k] == high, (name, k)
    full = get_json(client, "/scalars", run="long/train", source="training",
                    points=1000, start=10, end=12)
    assert full["buckets"] is None and full["epochs"] == [10, 11, 12]
    whole = get_json(client, "/scalars", run="long/train", source="training")
    assert full["series"] == {name: values[10:13]
                              for name, values in whole["series"].items()}


@pytest.mark.parametrize("route", ["/variable_stats", "/scalars"])
@pytest.mark.parametrize("params, name", [
    ({"points": "1"}, "points"), ({"points": "0"}, "points"),
    ({"points": "-5"}, "points"), ({"points": "x"}, "points"),
    ({"points": "2.5"}, "points"), ({"points": "100001"}, "points"),
    ({"points": "1" * 30}, "points"),
    ({"start": "x"}, "start"), ({"end": "1.5"}, "end"),
    ({"start": "1e3"}, "start"), ({"start": "9", "end": "3"}, "start"),
])
def test_bad_points_and_ranges_are_400(client, route, params, name):
    text = assert_error(client, 400, route, [repr(name)], run="long/train",
                        source="training", **params)
    assert f"{name}=" in text


# -- /steps ------------------------------------------------------------------


def test_steps_match_the_event_files(client, events):
    body = get_json(client, "/steps", run="tanh/train", source="training")
    stored = events("tanh/train")[metadata.steps_tag("training")]
    assert [e["epoch"] for e in body["epochs"]] == sorted(stored)
    for entry in body["epochs"]:
        table = stored[entry["epoch"]]
        assert len(entry["l2"]) == table.shape[0] == 4
        assert all(same(v, s) for v, s in zip(entry["l2"], table[:, 0]))
        assert all(same(v, s) for v, s in zip(entry["max_abs"], table[:, 1]))


def test_steps_of_the_nan_run(client, events):
    body = get_json(client, "/steps", run="exploding/train",
                    source="training")
    stored = events("exploding/train")[metadata.steps_tag("training")]
    assert None in body["epochs"][0]["l2"]
    for entry in body["epochs"]:
        table = stored[entry["epoch"]]
        assert all(same(v, s) for v, s in zip(entry["l2"], table[:, 0]))


def test_steps_of_every_epoch(client):
    body = get_json(client, "/steps", run="long/train", source="training")
    assert [e["epoch"] for e in body["epochs"]] == list(range(LONG_EPOCHS))


def test_steps_not_found_for_probe(client):
    assert_error(client, 404, "/steps", ["'tanh/train'", "'probe'"],
                 run="tanh/train", source="probe")


# -- /heatmap ----------------------------------------------------------------


def _stored_channel(series, source, variable, epoch, channel):
    """Decodes a stored channel independently of the plugin's code path."""
    content = json.loads(series["__metadata__"][
        metadata.heatmap_tag(source, variable)].plugin_data.content)
    tensor = series[metadata.heatmap_tag(source, variable)][epoch]
    position = content["channels"].index(channel)
    scale_name = content["channel_scales"][position]
    if content["encoding"] == "float32":
        return tensor[position].astype(np.float64).reshape(-1), scale_name
    scale = eventfiles.variable_stats(series, source, variable,
                                      epoch)[scale_name]
    values = heatmap.decode_log_uint8(tensor[position], scale,
                                    content["decades"])
    return values.reshape(-1), scale_name


def _check_heatmap(body, series, source, variable):
    epochs = sorted(series[metadata.heatmap_tag(source, variable)])
    assert body["epochs"] == epochs
    assert sorted(body["channels"]) == sorted(heatmap.HEATMAP_CHANNELS)
    for channel, entry in body["channels"].items():
        expected, scale_name = _stored_channel(series, source, variable,
                                               body["epoch"], channel)
        assert len(entry["values"]) == body["rows"] * body["cols"]
        assert all(same(v, s) for v, s in zip(entry["values"], expected))
        assert entry["nan"] == np.flatnonzero(np.isnan(expected)).tolist()
        assert entry["inf"] == np.flatnonzero(np.isinf(expected)).tolist()
        finite = expected[np.isfinite(expected)]
        assert same(entry["max"], finite.max() if finite.size else np.nan)
        scales = [eventfiles.variable_stats(series, source, variable,
                                            e)[scale_name] for e in epochs]
        scales = [s for s in scales if math.isfinite(s)]
        assert same(entry["scale"], max(scales) if scales else np.nan)


def test_heatmap_uint8_latest_epoch(client, events):
    body = get_json(client, "/heatmap", run="relu/train", source="probe",
                    variable="dense_1/kernel")
    assert body["epoch"] == 3 and body["encoding"] == "uint8"
    assert body["shape"] == [8, 8] and body["view_shape"] == [8, 8]
    assert body["block"] == [1, 1] and (body["rows"], body["cols"]) == (8, 8)
    assert body["variable"] == "dense_1/kernel"
    _check_heatmap(body, events("relu/train"), "probe", "dense_1/kernel")


def test_heatmap_given_epoch(client, events):
    body = get_json(client, "/heatmap", run="tanh/train", source="training",
                    variable="dense_0/bias", epoch="1")
    assert body["epoch"] == 1 and (body["rows"], body["cols"]) == (1, 8)
    _check_heatmap(body, events("tanh/train"), "training", "dense_0/bias")


def test_heatmap_float32_is_raw(client, events):
    body = get_json(client, "/heatmap", run="float/train", source="training",
                    variable="dense_0/kernel", epoch="0")
    assert body["encoding"] == "float32"
    assert body["block"] != [1, 1]  # 6x8 pooled into at most 16 cells
    assert body["rows"] * body["cols"] <= 16
    _check_heatmap(body, events("float/train"), "training", "dense_0/kernel")


def test_heatmap_of_the_nan_run(client, events):
    found_nan = False
    for epoch in ("0", "1", "2"):
        body = get_json(client, "/heatmap", run="exploding/train",
                        source="training", variable="dense/kernel",
                        epoch=epoch)
        _check_heatmap(body, events("exploding/train"), "training",
                       "dense/kernel")
        for entry in body["channels"].values():
            found_nan |= bool(entry["nan"])
            for index in entry["nan"] + entry["inf"]:
                assert entry["values"][index] is None
    assert found_nan


def test_heatmap_every_epoch(client):
    body = get_json(client, "/heatmap", run="long/train", source="training",
                    variable="dense_1/kernel", epoch="0")
    assert body["epochs"] == list(range(LONG_EPOCHS))
    body = get_json(client, "/heatmap", run="long/train", source="training",
                    variable="dense_1/kernel")
    assert body["epoch"] == LONG_EPOCHS - 1


def test_heatmap_step_is_the_parameter_and_epoch_its_older_name(client):
    base = {"run": "tanh/train", "source": "training",
            "variable": "dense_0/bias"}
    by_step = get_json(client, "/heatmap", **base, step="1")
    assert by_step["epoch"] == 1
    assert by_step == get_json(client, "/heatmap", **base, epoch="1")
    assert by_step == get_json(client, "/heatmap", **base, step="1",
                               epoch="1")
    assert by_step != get_json(client, "/heatmap", **base, step="2")
    assert_error(client, 400, "/heatmap", ["step", "'x'"], **base, step="x")
    assert_error(client, 404, "/heatmap", ["step 99"], **base, step="99")
    assert_error(client, 400, "/heatmap", ["step='1'", "epoch='2'"], **base,
                 step="1", epoch="2")


def test_heatmap_errors(client):
    base = {"run": "tanh/train", "source": "training",
            "variable": "dense_0/kernel"}
    assert_error(client, 400, "/heatmap", ["epoch", "'x'"], **base, epoch="x")
    assert_error(client, 400, "/heatmap", ["epoch", "'1.5'"], **base,
                 epoch="1.5")
    assert_error(client, 404, "/heatmap", ["epoch", "99", "epoch 99"], **base,
                 epoch="99")
    assert_error(client, 404, "/heatmap", ["-1", "epoch -1"], **base,
                 epoch="-1")
    assert_error(client, 400, "/heatmap", ["variable", "None"],
                 run="tanh/train", source="training")
    assert_error(client, 404, "/heatmap", ["variable 'nope/kernel'"],
                 run="tanh/train", source="training", variable="nope/kernel")


# -- /findings ----------------------------------------------------------------


def test_findings(client):
    """Every run is served; the NaN run has findings. (What each finding
    says is tested in test_findings.py.)"""
    for run in ("tanh/train", "long/train", "float/train"):
        body = get_json(client, "/findings", run=run)
        assert sorted(body) == ["errors", "findings", "run"]
        assert body["run"] == run and body["errors"] == []
        assert isinstance(body["findings"], list)
    assert get_json(client, "/findings", run="exploding/train")["findings"]


def test_findings_errors(client):
    assert_error(client, 400, "/findings", ["'run'", "None"])
    assert_error(client, 400, "/findings", ["'run'", "''"], run="")
    assert_error(client, 404, "/findings", ["run 'no-such-run'"],
                 run="no-such-run")


# -- errors shared by every route --------------------------------------------


ROUTES_WITH_RUN = ("/variables", "/scalars", "/variable_stats", "/steps",
                   "/heatmap")


@pytest.mark.parametrize("route", ROUTES_WITH_RUN)
def test_missing_and_invalid_parameters_are_400(client, route):
    extra = {"variable": "dense_0/kernel"} if route == "/heatmap" else {}
    assert_error(client, 400, route, ["'run'", "None"], source="training",
                 **extra)
    assert_error(client, 400, route, ["'run'", "''"], run="",
                 source="training", **extra)
    assert_error(client, 400, route, ["'source'", "None"], run="tanh/train",
                 **extra)
    assert_error(client, 400, route, ["source", "'gradient'"],
                 run="tanh/train", source="gradient", **extra)


@pytest.mark.parametrize("route", ROUTES_WITH_RUN)
def test_unknown_run_and_absent_source_are_404(client, route):
    extra = {"variable": "dense/kernel"} if route == "/heatmap" else {}
    assert_error(client, 404, route, ["run 'no-such-run'"], run="no-such-run",
                 source="training", **extra)
    assert_error(client, 404, route,
                 ["run 'exploding/train'", "source 'probe'"],
                 run="exploding/train", source="probe", **extra)


def test_hostile_run_name_is_returned_verbatim(client):
    run = f"{HOSTILE}/train"
    runs = [entry["run"] for entry in get_json(client, "/runs")["runs"]]
    assert run in runs
    for route in ("/variables", "/scalars", "/variable_stats", "/steps"):
        body = get_json(client, route, run=run, source="training")
        assert body["run"] == run
    body = get_json(client, "/heatmap", run=run, source="training",
                    variable="dense_0/kernel")
    assert body["run"] == run
    for route in ("/timestep_layers", "/findings"):
        assert get_json(client, route, run=run)["run"] == run


# -- requests that must not answer 500, nor reach the guard ------------------


# The parameters each data route reads (docs/API.md, Parameters).
ROUTE_PARAMETERS = {
    "/runs": (),
    "/variables": ("run", "source"),
    "/scalars": ("run", "source", "points", "start", "end"),
    "/variable_stats": ("run", "source", "filter", "stats", "points",
                        "start", "end"),
    "/steps": ("run", "source"),
    "/heatmap": ("run", "source", "variable", "step", "epoch"),
    "/timestep_layers": ("run",),
    "/timesteps": ("run", "layer", "step", "epoch"),
    "/gates": ("run", "source", "layer"),
    "/gate_heatmap": ("run", "source", "variable", "step", "epoch"),
    "/findings": ("run",),
    "/gradient_map": ("run", "source", "stat"),
}

FUZZ_VALUES = ("", "x", "../../etc/passwd", "\u00e9\u0000", "%", "((", "[",
               "1e999", "-0", "-1", "99", "9" * 40)


def data_routes():
    """Every route the plugin registers but its static assets."""
    apps = plugin.GradientsPlugin(base_plugin.TBContext()).get_plugin_apps()
    return sorted(set(apps) - {"/" + name for name in plugin.ASSETS})


def fuzz_params(route, bases, combined=(), values=FUZZ_VALUES):
    """The parameter sets asked of ``route``: each base, each base with one
    of the route's parameters left out or set to each of ``values``, and
    the ``combined`` sets, several hostile values at once."""
    for base in bases:
        yield base
        for name in ROUTE_PARAMETERS[route]:
            yield {key: value for key, value in base.items() if key != name}
            for value in values:
                yield dict(base, **{name: value})
    yield from combined


def assert_names_a_parameter(text, route, params):
    """A 4xx message names one of the route's parameters and the value it
    received (docs/API.md, Errors)."""
    for name in ROUTE_PARAMETERS[route]:
        value = params.get(name)
        received = [repr(value)]
        if plugin_params.parse_integer(value) is not None:
            received.append(" %d" % plugin_params.parse_integer(value))
        if name in text and any(v in text for v in received):
            return
    raise AssertionError("%s %r answered %r" % (route, params, text))


def assert_no_request_answers_500(client, guard_log, bases, combined):
    """Every data route, asked `fuzz_params`: strict JSON or a typed 4xx
    naming a parameter, never 500 and never the guard's answer."""
    assert sorted(ROUTE_PARAMETERS) == data_routes()
    for route in data_routes():
        for params in fuzz_params(route, bases, combined):
            response = get(client, route, **params)
            guard_log.assert_silent("%s %r" % (route, params))
            assert response.status_code in (200, 400, 404), (route, params)
            if response.status_code == 200:
                strict_json(response)
            else:
                assert_names_a_parameter(response.get_data(as_text=True),
                                         route, params)


def test_no_request_answers_500(client, guard_log):
    bases = ({"run": "tanh/train", "source": "training",
              "variable": "dense_0/kernel", "layer": "dense_0"},
             {"run": "exploding/train", "source": "training",
              "variable": "dense/kernel", "epoch": "1", "filter": "kernel",
              "stats": "l2,nan_count", "points": "2", "start": "0",
              "end": "1"},
             {"run": "long/train", "source": "probe",
              "variable": "dense_0/kernel"})
    combined = []
    for value in ("", "x", "tanh/train", f"{HOSTILE}/train",
                  "../../etc/passwd", "\u00e9\u0000", "%", "((", "[",
                  "1e999", "-0", "9" * 40):
        combined += [{"run": value, "source": "training"},
                     {"run": "tanh/train", "source": value},
                     {"run": "tanh/train", "source": "training",
                      "variable": value, "epoch": value, "filter": value},
                     {"run": "exploding/train", "source": "training",
                      "variable": "dense/kernel", "epoch": value}]
    assert_no_request_answers_500(client, guard_log, bases, combined)


def _write_odd_runs(root):
    """A run from a future format version and one with malformed tensors."""
    import tensorflow as tf
    from tensorboard.compat.proto import summary_pb2

    future = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME,
            content=json.dumps({"version": metadata.FORMAT_VERSION + 1,
                                "kind": "variable_stats",
                                "source": "training"}).encode()),
        data_class=summary_pb2.DATA_CLASS_TENSOR)
    with tf.summary.create_file_writer(str(root / "future")).as_default():
        tf.summary.write(metadata.variable_stats_tag("training", "v"),
                         tf.zeros([19], tf.float64), step=0, metadata=future)
    fields = {"variable": "v", "layer": "l", "index": 0, "shape": [3]}
    with tf.summary.create_file_writer(str(root / "broken")).as_default():
        for step in range(2):
            tf.summary.write(
                metadata.variable_stats_tag("training", "v"),
                tf.zeros([5], tf.float64), step=step,
                metadata=metadata.create_summary_metadata(
                    metadata.KIND_VARIABLE_STATS, "training",
                    stats=list(variable_stats_format.VARIABLE_STAT_NAMES), **fields))
            tf.summary.write(
                metadata.heatmap_tag("training", "v"),
                tf.zeros([3], tf.uint8), step=step,
                metadata=metadata.create_summary_metadata(
                    metadata.KIND_HEATMAP, "training", encoding="uint8",
                    **fields))
            tf.summary.write(
                metadata.steps_tag("training"), tf.zeros([4], tf.float32),
                step=step, metadata=metadata.create_summary_metadata(
                    metadata.KIND_STEPS, "training"))


def test_unknown_versions_and_malformed_data_are_named(tmp_path, guard_log):
    """A future version is listed with what to do about it; malformed
    tensors are a typed 404 naming run, tag, step, what was expected and
    what was found, for exactly the requests that read them, logged once
    per reason however often asked; the guard never fires."""
    _write_odd_runs(tmp_path)
    app, _, _ = make_app(tmp_path)
    client = werkzeug_test.Client(app)
    runs = {entry["run"]: entry for entry in get_json(client, "/runs")["runs"]}
    assert sorted(runs) == ["broken", "future"]
    assert runs["future"]["sources"] == [] and runs["future"]["epochs"] == 0
    [error] = runs["future"]["errors"]
    assert error["tag"] == metadata.variable_stats_tag("training", "v")
    assert error["reason"] == (
        f"written by format version {metadata.FORMAT_VERSION + 1}; this "
        f"version reads up to {metadata.FORMAT_VERSION}: upgrade "
        "tb-gradients")
    assert runs["broken"]["errors"] == []
    assert_error(client, 404, "/variables", ["'future'"], run="future",
                 source="training")
    body = get_json(client, "/findings", run="future")
    assert body["findings"] == [] and body["errors"] == [error]
    body = get_json(client, "/variable_stats", run="broken",
                    source="training")
    assert body["epochs"] == [] and body["variables"][0]["values"] == []
    body = get_json(client, "/findings", run="broken")
    assert body["findings"] == []
    stats_tag = metadata.variable_stats_tag("training", "v")
    assert [(e["tag"], e["step"], e["more"]) for e in body["errors"]] == [
        (stats_tag, 0, 1), (metadata.steps_tag("training"), 0, 1)]
    assert body["errors"][0]["reason"] == (
        "expected a float vector of 22 statistics, found shape (5,) float64")
    damaged = [("/heatmap", [metadata.heatmap_tag("training", "v"),
                             "step 1", "expected a uint8 tensor of shape "
                             "(4, rows, cols), found shape (3,) uint8"],
                {"run": "broken", "source": "training", "variable": "v"}),
               ("/steps", [metadata.steps_tag("training"), "step 0",
                           "expected a float table of shape (steps, 2), "
                           "found shape (4,) float32"],
                {"run": "broken", "source": "training"})]
    for _ in range(3):
        for route, words, params in damaged:
            assert_error(client, 404, route, ["run 'broken'"] + words,
                         **params)
    guard_log.assert_silent("reading damaged and foreign runs")
    logged = guard_log.read_errors
    assert len(logged) == 4, logged  # future, stats, heatmap, steps: once
    assert any("upgrade tb-gradients" in line for line in logged)


def _write_stats_epochs(run_dir, epochs):
    """Statistics of one variable at ``epochs``, in a new event file."""
    import tensorflow as tf

    summary_metadata = metadata.create_summary_metadata(
        metadata.KIND_VARIABLE_STATS, "training", variable="v", layer="l",
        index=0, shape=[2], stats=list(variable_stats_format.VARIABLE_STAT_NAMES))
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        for epoch in epochs:
            vector = tf.fill([len(variable_stats_format.VARIABLE_STAT_NAMES)],
                             tf.constant(float(epoch + 1), tf.float64))
            tf.summary.write(metadata.variable_stats_tag("training", "v"),
                             vector, step=epoch, metadata=summary_metadata)
    writer.close()


def test_new_epochs_are_served_after_a_reload(tmp_path):
    _write_stats_epochs(tmp_path / "growing", [0, 1])
    app, _, reload = make_app(tmp_path)
    client = werkzeug_test.Client(app)
    params = {"run": "growing", "source": "training"}
    assert get_json(client, "/runs")["runs"][0]["epochs"] == 2
    assert get_json(client, "/variable_stats", **params)["epochs"] == [0, 1]
    time.sleep(0.01)  # a later wall time, as for any new event
    _write_stats_epochs(tmp_path / "growing", [2, 3])
    reload()
    assert get_json(client, "/runs")["runs"][0]["epochs"] == 4
    body = get_json(client, "/variable_stats", **params)
    assert body["epochs"] == [0, 1, 2, 3]
    assert [row[0] for row in body["variables"][0]["values"]] == [1, 2, 3, 4]


def test_timesteps_of_a_run_without_recurrent_layers_is_404(client):
    # The recurrent-layer routes are tested in test_plugin_recurrent.py.
    assert_error(client, 404, "/timesteps", ["'dense_0'", "'tanh/train'"],
                 run="tanh/train", layer="dense_0")


# -- static assets -----------------------------------------------------------


class _AssetsLoader(plugin.GradientsLoader):
    def __init__(self, directory):
        self._directory = directory

    def load(self, context):
        return plugin.GradientsPlugin(context, assets_dir=self._directory)


def test_static_assets_fixed_map(tmp_path, logdir):
    assets = tmp_path / "frontend"
    assets.mkdir()
    (assets / "index.js").write_text("export function render() {}\n")
    (assets / "style.css").write_text("body { color: red; }\n")
    (assets / "page.html").write_text("<script>alert(1)</script>")
    (assets / ".hidden.js").write_text("secret")
    (assets / "sub").mkdir()
    (assets / "sub" / "nested.js").write_text("nested")
    (assets / "sub" / "page.html").write_text("<script>alert(2)</script>")
    (assets / ".hidden").mkdir()
    (assets / ".hidden" / "secret.js").write_text("secret")
    (assets / "a" / "b" / "c").mkdir(parents=True)
    (assets / "a" / "b" / "c" / "deep.js").write_text("too deep")
    (assets / "linked").symlink_to(assets / "sub")
    app, _, _ = make_app(os.path.join(logdir, "float"),
                      loader=_AssetsLoader(str(assets)))
    client = werkzeug_test.Client(app)
    for name, mimetype in (("index.js", "text/javascript"),
                           ("style.css", "text/css"),
                           ("sub/nested.js", "text/javascript")):
        response = client.get(f"{PREFIX}/{name}")
        assert response.status_code == 200
        assert response.mimetype == mimetype
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.get_data() == (assets / name).read_bytes()
    # Files created after loading are not routes either.
    (assets / "late.js").write_text("late")
    for name in ("page.html", ".hidden.js", "sub", "sub/", "sub/page.html",
                 ".hidden/secret.js", "a/b/c/deep.js", "linked/nested.js",
                 "sub/../index.js", "late.js",
                 "missing.js", "..%2Fplugin.py", "../plugin.py",
                 "%2E%2E/plugin.py"):
        assert client.get(f"{PREFIX}/{name}").status_code == 404, name


def test_package_frontend_is_served(client):
    assert "index.js" in plugin.ASSETS, (
        "the frontend entry module tb_gradients/frontend/index.js is missing")
    for name, mimetype in plugin.ASSETS.items():
        response = client.get(f"{PREFIX}/{name}")
        assert response.status_code == 200, name
        assert response.mimetype == mimetype
        assert mimetype in ("text/javascript", "text/css")
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_plugins_listing(client):
    response = client.get("/data/plugins_listing")
    listing = strict_json(response)["gradients"]
    assert listing["enabled"] is True
    assert listing["tab_name"] == "Gradients"
    assert listing["loading_mechanism"] == {
        "type": "IFRAME", "module_path": f"{PREFIX}/index.js"}
