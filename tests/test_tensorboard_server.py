"""A real ``tensorboard`` process finds, loads and serves the plugin.

The plugin is found through its ``tensorboard_plugins`` entry point, as for
a user. Both loaders are exercised: the Python one (``--load_fast=false``)
and the Rust data server (``--load_fast=true``), whose default sampling
would keep only 100 of the 150 epochs of the long run if `fix_flags` did
not ask for all of them.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tb_gradients.plugin import routes as plugin_routes

from tests import browser_harness
from tests import test_plugin_wsgi

LONG_EPOCHS = test_plugin_wsgi.LONG_EPOCHS
PREFIX = "/data/plugin/gradients"
# Generous: TensorBoard imports TensorFlow before it listens. Not a
# performance check, only how long to wait before giving up.
STARTUP_LIMIT_S = 240


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    return test_plugin_wsgi.shared_logdir(tmp_path_factory)


def _free_port():
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _reject_constant(name):
    raise AssertionError(f"non-strict JSON constant {name!r} in a response")


def _get_json(base, path, **params):
    query = urllib.parse.urlencode(params)
    url = base + path + (f"?{query}" if query else "")
    with urllib.request.urlopen(url, timeout=60) as response:
        assert response.status == 200
        return json.loads(response.read().decode("utf-8"),
                          parse_constant=_reject_constant)


def _wait_until_loaded(process, base, log_path):
    """Waits until the long run's statistics are served in full.

    Both loaders read the logdir in the background after the server
    starts listening, so readiness is "the data is there", not "the port
    answers".
    """
    deadline = time.monotonic() + STARTUP_LIMIT_S
    last_error = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            runs = _get_json(base, PREFIX + "/runs")["runs"]
            epochs = {r["run"]: r["epochs"] for r in runs}
            if epochs.get("long/train") == LONG_EPOCHS and len(runs) >= 6:
                return
            last_error = f"runs so far: {epochs}"
        except (urllib.error.URLError, ConnectionError, OSError) as error:
            last_error = error
        time.sleep(0.5)
    with open(log_path, encoding="utf-8", errors="replace") as f:
        log = f.read()[-4000:]
    raise AssertionError(f"TensorBoard did not serve the logdir "
                         f"(exit code {process.poll()}, last: {last_error}):"
                         f"\n{log}")


@pytest.fixture(scope="module", params=["false", "true"],
                ids=["load_fast=false", "load_fast=true"])
def tensorboard(request, logdir, tmp_path_factory):
    """A running TensorBoard, ``(address, log path)``; always stopped at
    teardown."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("tensorboard") / "server.log"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", logdir,
               "--host", "127.0.0.1", "--port", str(port),
               f"--load_fast={request.param}", "--reload_interval=1"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log,
                                   stderr=subprocess.STDOUT, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_loaded(process, base, log_path)
        yield base, log_path
    finally:
        browser_harness.stop_process(process)


def _guard_warnings(log_path, offset):
    """The plugin guard's warnings (`plugin.routes._guarded`) logged after
    ``offset``."""
    marker = plugin_routes.GUARD_WARNING.split("%", 1)[0]
    with open(log_path, encoding="utf-8", errors="replace") as f:
        f.seek(offset)
        return [line for line in f if marker in line]


@pytest.fixture
def server(tensorboard):
    """The running TensorBoard's address; the test fails if the plugin's
    last-resort guard answered any of its requests (on intact data every
    error is a typed one of the route)."""
    base, log_path = tensorboard
    offset = os.path.getsize(log_path)
    yield base
    warnings = _guard_warnings(log_path, offset)
    assert not warnings, "the guard answered: %s" % "".join(warnings)


def test_plugin_is_listed(server):
    listing = _get_json(server, "/data/plugins_listing")["gradients"]
    assert listing["enabled"] is True
    assert listing["loading_mechanism"] == {
        "type": "IFRAME", "module_path": PREFIX + "/index.js"}


def test_runs_are_listed(server):
    runs = _get_json(server, PREFIX + "/runs")["runs"]
    by_name = {r["run"]: r for r in runs}
    assert by_name["tanh/train"]["sources"] == ["training", "probe"]
    assert by_name["tanh/train"]["epochs"] == 4
    assert f"{test_plugin_wsgi.HOSTILE}/train" in by_name
    assert by_name["long/train"]["epochs"] == LONG_EPOCHS


def test_every_epoch_is_served(server):
    stats = _get_json(server, PREFIX + "/variable_stats", run="long/train",
                      source="training")
    assert stats["epochs"] == list(range(LONG_EPOCHS))
    assert all(all(v is not None for v in variable["values"])
               for variable in stats["variables"])
    heatmap = _get_json(server, PREFIX + "/heatmap", run="long/train",
                        source="training", variable="dense_0/kernel")
    assert heatmap["epochs"] == list(range(LONG_EPOCHS))
    assert heatmap["epoch"] == LONG_EPOCHS - 1
    steps = _get_json(server, PREFIX + "/steps", run="long/train",
                      source="training")
    assert len(steps["epochs"]) == LONG_EPOCHS


def test_nan_run_is_strict_json(server):
    heatmap = _get_json(server, PREFIX + "/heatmap", run="exploding/train",
                        source="training", variable="dense/kernel")
    assert any(entry["nan"] for entry in heatmap["channels"].values())


def test_findings_are_served(server):
    body = _get_json(server, PREFIX + "/findings", run="exploding/train")
    assert body["run"] == "exploding/train" and body["findings"]


def _error(url):
    """``(status, text)`` of a request that must fail."""
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(url, timeout=60)
    return error.value.code, error.value.read().decode("utf-8", "replace")


def test_errors_are_4xx(server):
    for params, status in (({"run": "tanh/train", "source": "x"}, 400),
                           ({"run": "nope", "source": "training"}, 404)):
        url = server + PREFIX + "/variables?" + urllib.parse.urlencode(params)
        code, text = _error(url)
        assert code == status
        assert plugin_routes.GUARD_NOT_FOUND not in text, text


@pytest.mark.parametrize("route, params, status, words", [
    ("/heatmap", {"run": "tanh/train", "source": "training",
                  "variable": "nope/kernel"}, 404, "variable 'nope/kernel'"),
    ("/heatmap", {"run": "tanh/train", "source": "training",
                  "variable": "dense_0/kernel", "epoch": "99"}, 404,
     "epoch 99"),
    ("/timesteps", {"run": "tanh/train", "layer": "dense_0"}, 404,
     "layer 'dense_0'"),
    ("/findings", {"run": "nope"}, 404, "run 'nope'"),
    ("/findings", {}, 400, "'run'"),
], ids=["unknown-variable", "absent-epoch", "unknown-layer", "unknown-run",
        "missing-run"])
def test_route_errors_are_typed(server, route, params, status, words):
    """Both loaders: the route's own error, not the guard's."""
    url = server + PREFIX + route + "?" + urllib.parse.urlencode(params)
    code, text = _error(url)
    assert code == status and words in text, text
    assert plugin_routes.GUARD_NOT_FOUND not in text, text


def test_no_request_answers_500(server):
    """Every data route, each parameter absent or odd, on both loaders:
    strict JSON or a 4xx naming a parameter (fewer values than in
    test_plugin_wsgi: each request is an HTTP round trip)."""
    base = {"run": "exploding/train", "source": "training",
            "variable": "dense/kernel", "layer": "dense", "epoch": "1"}
    for route in test_plugin_wsgi.data_routes():
        for params in test_plugin_wsgi.fuzz_params(
                route, [base], values=("x", "((", "-1", "9" * 40)):
            try:
                _get_json(server, PREFIX + route, **params)
            except urllib.error.HTTPError as error:
                assert error.code in (400, 404), (route, params)
                test_plugin_wsgi.assert_names_a_parameter(
                    error.read().decode("utf-8", "replace"), route, params)
