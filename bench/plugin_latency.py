"""Latency of the Gradients plugin's routes on a realistic log directory.

Builds (once; reused when present) three runs of 100 epochs of a 30-layer
MLP (60 trainable variables, both gradient sources, histograms and small
heatmaps) with `GradientTensorBoard`, loads them with TensorBoard's Python
loader into TensorBoard's real WSGI app, and times each route in-process
(no network), so the figures are the plugin's own cost plus TensorBoard's
request handling. The goal is p95 <= 100 ms per route.

Usage (from the repository root):

    .venv/bin/python bench/plugin_latency.py [--requests 60] [--rebuild] \
        [--server]

``--server`` also times the routes over HTTP against real ``tensorboard``
processes with each loader (``--load_fast=false`` / ``true``), which adds
TensorBoard's HTTP server and, for the Rust data server, a gRPC round trip
per data-provider call. Prints tables and writes
bench/out/plugin_latency.json with machine info.
"""

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
LOGDIR = os.path.join(OUT, "latency_logdir")
RESULT = os.path.join(OUT, "plugin_latency.json")

RUNS = (("tanh", "tanh"), ("relu", "relu"), ("sigmoid", "sigmoid"))
EPOCHS = 100
HIDDEN_LAYERS = 29  # + the output layer: 30 Dense layers, 60 variables
HEATMAP_CELLS = 64
GOAL_P95_MS = 100.0
PREFIX = "/data/plugin/gradients"
FIVE_STATS = "mean,std,max_abs,l2,mean_abs"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, ROOT)


def build_logdir(rebuild=False):
    """Trains the benchmark runs unless a complete logdir is there.

    Returns:
      ``(logdir, seconds spent training; 0 when reused)``.
    """
    marker = os.path.join(LOGDIR, ".complete")
    if rebuild and os.path.exists(LOGDIR):
        shutil.rmtree(LOGDIR)
    if os.path.exists(marker):
        return LOGDIR, 0.0
    from tests import logdirs

    start = time.perf_counter()
    for name, activation in RUNS:
        logdirs.train_mlp_run(os.path.join(LOGDIR, name), epochs=EPOCHS,
                              source="both", activation=activation,
                              layers=HIDDEN_LAYERS,
                              heatmap_cells=HEATMAP_CELLS)
    with open(marker, "w") as f:
        f.write("ok")
    return LOGDIR, time.perf_counter() - start


def make_client(logdir):
    """TensorBoard's WSGI app over the Python loader, flags parsed by TB."""
    from tensorboard import program
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_ingester
    from tensorboard.plugins.core import core_plugin
    from werkzeug import test as werkzeug_test

    from tb_gradients import plugin

    class RecordingLoader(plugin.GradientsLoader):
        instance = None

        def load(self, context):
            RecordingLoader.instance = super().load(context)
            return RecordingLoader.instance

    loaders = [core_plugin.CorePluginLoader(), RecordingLoader()]
    tensorboard = program.TensorBoard(plugins=loaders)
    tensorboard.configure(argv=[
        "tensorboard", "--logdir", logdir, "--load_fast=false",
        "--reload_task=blocking", "--reload_interval=0"])
    start = time.perf_counter()
    ingester = data_ingester.LocalDataIngester(tensorboard.flags)
    ingester.start()
    load_s = time.perf_counter() - start
    app = application.TensorBoardWSGIApp(tensorboard.flags, loaders,
                                         ingester.data_provider)
    return werkzeug_test.Client(app), RecordingLoader.instance, load_s


def wsgi_fetcher(client):
    """``fetch(url) -> (status, body bytes)`` through the in-process app."""

    def fetch(url):
        response = client.get(url)
        return response.status_code, response.get_data()

    return fetch


def http_fetcher(base):
    """``fetch(url) -> (status, body bytes)`` over HTTP to a server."""

    def fetch(url):
        try:
            with urllib.request.urlopen(base + url, timeout=120) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    return fetch


@contextlib.contextmanager
def tensorboard_server(logdir, load_fast):
    """A real ``tensorboard`` process, serving once every run is loaded."""
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", logdir,
         "--host", "127.0.0.1", "--port", str(port),
         f"--load_fast={load_fast}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        fetch = http_fetcher(base)
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tensorboard did not serve the logdir")
            try:
                status, body = fetch(PREFIX + "/runs")
                runs = json.loads(body)["runs"] if status == 200 else []
                if len(runs) == len(RUNS) and all(
                        r["epochs"] == EPOCHS for r in runs):
                    break
            except OSError:
                pass
            time.sleep(1)
        yield fetch
    finally:
        process.terminate()
        process.wait(timeout=30)


def _url(route, **params):
    return f"{PREFIX}{route}?{urllib.parse.urlencode(params)}"


def request_cases(fetch):
    """For each benchmarked case, a function giving the i-th request URL.

    Requests cycle over runs, sources, variables and epochs so that no
    case times one lucky request repeatedly.
    """
    runs = [r["run"] for r in json.loads(fetch(PREFIX + "/runs")[1])["runs"]]
    variables = [v["name"] for v in json.loads(fetch(
        _url("/variables", run=runs[0], source="training"))[1])["variables"]]
    rng = random.Random(0)
    sources = ("training", "probe")

    def pick(i):
        return runs[i % len(runs)], sources[(i // len(runs)) % 2]

    return {
        "runs": lambda i: PREFIX + "/runs",
        "variables": lambda i: _url("/variables", run=pick(i)[0],
                                    source=pick(i)[1]),
        "scalars": lambda i: _url("/scalars", run=pick(i)[0],
                                  source=pick(i)[1]),
        "variable_stats": lambda i: _url("/variable_stats", run=pick(i)[0],
                                         source=pick(i)[1]),
        "variable_stats (filter)": lambda i: _url(
            "/variable_stats", run=pick(i)[0], source=pick(i)[1],
            filter="kernel$"),
        # Five columns, as a view that draws a few statistics asks for.
        "variable_stats (5 stats)": lambda i: _url(
            "/variable_stats", run=pick(i)[0], source=pick(i)[1],
            stats=FIVE_STATS),
        "steps": lambda i: _url("/steps", run=runs[i % len(runs)],
                                source="training"),
        "heatmap (latest)": lambda i: _url(
            "/heatmap", run=pick(i)[0], source=pick(i)[1],
            variable=variables[rng.randrange(len(variables))]),
        "heatmap (epoch)": lambda i: _url(
            "/heatmap", run=pick(i)[0], source=pick(i)[1],
            variable=variables[rng.randrange(len(variables))],
            epoch=rng.randrange(EPOCHS)),
    }


def percentile(values, fraction):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def measure(fetch, url_for, requests, before=None, warm_all=False):
    """Milliseconds of each of ``requests`` requests, after a warm-up.

    Args:
      fetch: ``fetch(url) -> (status, body)``.
      url_for: Gives the i-th URL.
      before: Called (untimed) before each timed request, e.g. to empty
        the plugin's response cache for cold figures.
      warm_all: Warm up every distinct URL (so the response cache holds
        them all) instead of only the first.
    """
    urls = [url_for(i) for i in range(requests)]
    for url in (sorted(set(urls)) if warm_all else urls[:1]):
        status, body = fetch(url)
        if status != 200:
            raise RuntimeError(f"{url} answered {status}: {body[:300]!r}")
    times, sizes = [], []
    for url in urls:
        if before is not None:
            before()
        start = time.perf_counter()
        status, body = fetch(url)
        times.append((time.perf_counter() - start) * 1000.0)
        if status != 200:
            raise RuntimeError(f"{url} answered {status}")
        sizes.append(len(body))
    return {
        "requests": requests,
        "median_ms": statistics.median(times),
        "p95_ms": percentile(times, 0.95),
        "max_ms": max(times),
        "median_bytes": int(statistics.median(sizes)),
    }


def machine_info():
    import numpy
    import tensorboard
    import tensorflow as tf

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        # Other work on the machine skews latencies: recorded, not removed.
        "load_average_1_5_15": list(os.getloadavg()),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "tensorflow": tf.__version__,
        "tensorboard": tensorboard.__version__,
    }


def print_table(title, results):
    print(f"\n{title}")
    print(f"{'route':26s} {'cold median':>11s} {'cold p95':>9s} "
          f"{'warm median':>11s} {'warm p95':>9s} {'bytes':>9s}   (ms)")
    for name, r in results.items():
        cold = r.get("cold")
        cold_text = (f"{cold['median_ms']:11.1f} {cold['p95_ms']:9.1f}"
                     if cold else f"{'-':>11s} {'-':>9s}")
        warm = r["warm"]
        print(f"{name:26s} {cold_text} {warm['median_ms']:11.1f} "
              f"{warm['p95_ms']:9.1f} {warm['median_bytes']:9d}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=60,
                        help="timed requests per route (after the warm-up)")
    parser.add_argument("--rebuild", action="store_true",
                        help="train the benchmark logdir again")
    parser.add_argument("--server", action="store_true",
                        help="also time HTTP requests to real `tensorboard` "
                             "processes (--load_fast=false and true)")
    args = parser.parse_args(argv)

    os.makedirs(OUT, exist_ok=True)
    logdir, build_s = build_logdir(args.rebuild)
    client, plugin_instance, load_s = make_client(logdir)
    fetch = wsgi_fetcher(client)
    results = {}
    for name, url_for in request_cases(fetch).items():
        results[name] = {
            # Every request pays the whole read + JSON encoding.
            "cold": measure(fetch, url_for, args.requests,
                            before=plugin_instance.clear_caches),
            # Every URL requested once before: the plugin's response cache
            # answers what it holds (data unchanged since).
            "warm": measure(fetch, url_for, args.requests, warm_all=True),
        }
    print_table("In-process WSGI app, Python loader (load_fast=false)",
                results)
    worst = max(r["warm"]["p95_ms"] for r in results.values())
    worst_cold = max(r["cold"]["p95_ms"] for r in results.values())
    print(f"worst p95: warm {worst:.1f} ms, cold {worst_cold:.1f} ms "
          f"(goal <= {GOAL_P95_MS:.0f} ms); "
          f"TensorBoard load {load_s:.1f} s; training {build_s:.0f} s "
          f"({'reused logdir' if not build_s else 'built now'})")

    server_results = {}
    if args.server:
        for load_fast in ("false", "true"):
            with tensorboard_server(logdir, load_fast) as http_fetch:
                server_results[f"load_fast={load_fast}"] = {
                    name: {"warm": measure(http_fetch, url_for,
                                           args.requests, warm_all=True)}
                    for name, url_for in request_cases(http_fetch).items()
                }
            print_table(f"HTTP to `tensorboard --load_fast={load_fast}`",
                        server_results[f"load_fast={load_fast}"])

    report = {
        "benchmark": "plugin_latency",
        "command": "python bench/plugin_latency.py " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "logdir": {"runs": len(RUNS), "epochs": EPOCHS,
                   "variables": 2 * (HIDDEN_LAYERS + 1),
                   "sources": ["training", "probe"],
                   "heatmap_cells": HEATMAP_CELLS, "histograms": True},
        "loader": "python (load_fast=false), in-process WSGI",
        "goal_p95_ms": GOAL_P95_MS,
        "worst_p95_ms": {"warm": worst, "cold": worst_cold},
        "tensorboard_load_s": load_s,
        "training_s": build_s,
        "routes": results,
        "http_routes": server_results,
        "machine": machine_info(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with open(RESULT, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    print(f"written {os.path.relpath(RESULT, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
