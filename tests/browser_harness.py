"""A real TensorBoard process and headless Chromium showing the Gradients tab.

Shared by the browser tests, the render-time benchmark and the screenshot
script, so that all three look at the tab the way a user does: TensorBoard's
own page, the plugin in its iframe.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PLUGIN_PREFIX = "/data/plugin/gradients"
# How long to wait for TensorBoard (it imports TensorFlow before listening)
# and for the logdir to be loaded. Not a performance check.
STARTUP_LIMIT_S = 240

# Counts the pixels of every canvas of one view that differ from the white
# background, and the saturated ones: axes, grid and text are grey, so only
# data (lines, points, bars, heatmap cells) is saturated.
CANVAS_PIXELS_JS = """
(view) => [...document.querySelectorAll(`canvas[data-view="${view}"]`)].map((canvas) => {
  const {data} = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
  let drawn = 0;
  let saturated = 0;
  for (let i = 0; i < data.length; i += 4) {
    const r = data[i], g = data[i + 1], b = data[i + 2];
    if (r !== 255 || g !== 255 || b !== 255) drawn++;
    if (Math.max(r, g, b) - Math.min(r, g, b) > 60) saturated++;
  }
  return {run: canvas.dataset.run || null, width: canvas.width, height: canvas.height, drawn, saturated};
})
"""

# A digest of the pixels of every heatmap canvas, to tell frames apart.
HEATMAP_DIGEST_JS = """
() => [...document.querySelectorAll('canvas[data-view="heatmap"]')].map((canvas) => {
  const {data} = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
  let hash = 0;
  for (let i = 0; i < data.length; i++) hash = (hash * 31 + data[i]) >>> 0;
  return hash;
}).join(',')
"""


def chromium_missing_message():
    return (f"{CHROMIUM} is missing: run `make browser` "
            "(apt-get install chromium) to install it")


def free_port():
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))


def wait_for_runs(process, base, expected, log_path):
    """Waits until ./runs lists every run of `expected` (run -> epochs).

    Both loaders read the logdir in the background after the server starts
    listening: ready means "the data is there", not "the port answers".
    """
    deadline = time.monotonic() + STARTUP_LIMIT_S
    last = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            runs = get_json(base + PLUGIN_PREFIX + "/runs")["runs"]
            last = {info["run"]: info["epochs"] for info in runs}
            if all(last.get(run) == epochs for run, epochs in expected.items()) \
                    and _statistics_loaded(base, runs, expected):
                return runs
        except (urllib.error.URLError, ConnectionError, OSError, ValueError) as error:
            last = error
        time.sleep(0.5)
    with open(log_path, encoding="utf-8", errors="replace") as log:
        tail = log.read()[-3000:]
    raise RuntimeError(f"TensorBoard did not serve the logdir (exit code "
                       f"{process.poll()}, last answer: {last!r}):\n{tail}")


def wait_for_settled_runs(base, quiet_s=3.0):
    """Waits until the run listing is non-empty and unchanged for `quiet_s`
    (for logdirs whose content the caller does not know in advance)."""
    deadline = time.monotonic() + STARTUP_LIMIT_S
    previous = None
    while time.monotonic() < deadline:
        listing = get_json(base + PLUGIN_PREFIX + "/runs")["runs"]
        if listing and listing == previous:
            return listing
        previous = listing
        time.sleep(quiet_s)
    raise RuntimeError(f"The run listing did not settle: {previous!r}")


def _statistics_loaded(base, runs, expected):
    """Whether every source of every expected run serves all its epochs'
    per-variable statistics (the loaders read a run's series one by one, so
    the run listing can be complete before them)."""
    for info in runs:
        if info["run"] not in expected:
            continue
        for source in info["sources"]:
            query = urllib.parse.urlencode({"run": info["run"], "source": source})
            stats = get_json(f"{base}{PLUGIN_PREFIX}/variable_stats?{query}")
            if len(stats["epochs"]) != expected[info["run"]]:
                return False
    return True


@contextlib.contextmanager
def tensorboard(logdir, load_fast=False, expected_runs=None):
    """Runs `tensorboard` on `logdir`; yields its base URL.

    Args:
      logdir: The log directory.
      load_fast: TensorBoard's --load_fast (True: the Rust data server).
      expected_runs: run -> epochs to wait for before yielding; None waits
        for the plugin's run listing to answer.
    """
    with tensorboard_with_log(logdir, load_fast, expected_runs) as (base, _):
        yield base


@contextlib.contextmanager
def tensorboard_with_log(logdir, load_fast=False, expected_runs=None):
    """`tensorboard`, yielding ``(base URL, path of its log)``."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(
        prefix="tensorboard-", suffix=".log", delete=False)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
         "--port", str(port), "--host", "localhost",
         f"--load_fast={'true' if load_fast else 'false'}"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://localhost:{port}"
    try:
        wait_for_runs(process, base, expected_runs or {}, log.name)
        yield base, log.name
    finally:
        stop_process(process)
        log.close()
        os.unlink(log.name)


def stop_process(process, timeout=30):
    """Terminates ``process``, and kills it if it has not exited after
    ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def page_problems(page):
    """The list that collects the page's console errors and uncaught
    exceptions (the plugin iframe's reach the page's listeners too)."""
    problems = []
    page.on("console", lambda message: problems.append(
        f"console.{message.type}: {message.text}")
        if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    return problems


def launch_chromium(playwright):
    return playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def gradients_frame(page, timeout_ms=60000):
    """The iframe TensorBoard created for the Gradients tab."""
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        for frame in page.frames:
            if "plugin_entry.html" in frame.url and "name=gradients" in frame.url:
                return frame
        page.wait_for_timeout(100)
    raise AssertionError(
        f"No Gradients iframe; frames: {[frame.url for frame in page.frames]}")


def wait_rendered(frame, timeout_ms=60000):
    """Waits until every view of the tab has drawn."""
    frame.wait_for_selector("body[data-rendered='true']", state="attached",
                            timeout=timeout_ms)


def open_gradients_tab(page, base, timeout_ms=60000):
    """Opens TensorBoard's page on the Gradients tab; returns its frame."""
    page.goto(base + "/#gradients")
    frame = gradients_frame(page, timeout_ms)
    wait_rendered(frame, timeout_ms)
    return frame


def select_runs(frame, runs, timeout_ms=60000):
    """Ticks exactly `runs` in the run picker and waits for the redraw."""
    boxes = frame.locator("#run-picker input[type=checkbox]")
    for index in range(boxes.count()):
        box = boxes.nth(index)
        wanted = box.get_attribute("value") in runs
        if box.is_checked() != wanted:
            box.click()
    frame.wait_for_function(
        """(runs) => document.body.dataset.rendered === 'true' &&
             JSON.stringify([...document.querySelectorAll('#view-norms .panel')]
               .map((panel) => panel.dataset.run).sort()) === JSON.stringify([...runs].sort())""",
        arg=list(runs), timeout=timeout_ms)
