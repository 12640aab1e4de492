"""A long window run in the Gradients tab: overview envelope, zoomed detail.

A real TensorBoard serves a run recorded per optimizer step
(``gradient_window=1``, 240 records); headless Chromium shows it in a
narrow window, so the line charts have fewer pixels than records. The
overview charts are drawn from a min/max envelope (``/variable_stats``
with ``points``); dragging across a chart fetches the zoomed step range
(``start`` / ``end``) and draws every record in it.
"""

import math
import os
import urllib.parse

import pytest

from tests import browser_harness as harness
from tests import logdirs

RUN = "long/train"
EPOCHS = 60  # 4 optimizer steps each: 240 records
TIMEOUT_MS = 60000


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("long_run_logdir")
    logdirs.train_mlp_run(os.path.join(root, "long"), epochs=EPOCHS,
                          source="training", gradient_window=1,
                          heatmap_cells=16, histograms=False)
    return root


@pytest.fixture(scope="module")
def tab(logdir, browser):
    with harness.tensorboard(logdir, expected_runs={RUN: 4 * EPOCHS}) as base:
        page = browser.new_page(viewport={"width": 640, "height": 900})
        problems = harness.page_problems(page)
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        frame = harness.open_gradients_tab(page, base, TIMEOUT_MS)
        yield base, frame, page, problems, requests
        page.close()


def _drag(frame, page, canvas, fractions):
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    area = frame.evaluate(
        """(run) => document.querySelector(
             `canvas[data-view=highest][data-run="${run}"]`).plotArea""", RUN)
    y = box["y"] + (area["top"] + area["bottom"]) / 2
    x0, x1 = (box["x"] + area["left"] + f * area["width"] for f in fractions)
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, y, steps=3)
    page.mouse.move(x1, y, steps=3)
    page.mouse.up()
    return area


def test_zoom_fetches_and_draws_the_range_at_full_resolution(tab):
    base, frame, page, problems, requests = tab
    query = urllib.parse.urlencode({"run": RUN, "source": "training",
                                    "stats": "max_abs"})
    steps = harness.get_json(
        f"{base}{harness.PLUGIN_PREFIX}/variable_stats?{query}")["epochs"]
    assert len(steps) == 4 * EPOCHS
    canvas = frame.locator(f"canvas[data-view=highest][data-run='{RUN}']")
    # The overview: a min/max envelope, fewer points than records.
    assert canvas.get_attribute("data-resolution") == "envelope"
    overview = [url for url in requests if "variable_stats" in url
                and "points=" in url and "start=" not in url]
    assert overview
    buckets = harness.get_json(overview[0])["buckets"]
    assert buckets is not None and len(buckets["first"]) < len(steps)
    # Two points per bucket: its smallest and its largest value.
    assert int(canvas.get_attribute("data-points-in-view")) == \
        2 * len(buckets["first"])
    before = len(requests)

    area = _drag(frame, page, canvas, (0.3, 0.5))
    assert canvas.get_attribute("data-zoomed") == "true"
    frame.wait_for_function(
        """(run) => {
             const canvas = document.querySelector(
               `canvas[data-view=highest][data-run="${run}"]`);
             return canvas.dataset.zoomLoading === 'false'
               && canvas.dataset.resolution === 'full';
           }""", arg=RUN, timeout=TIMEOUT_MS)
    low, high = (float(v) for v in
                 canvas.get_attribute("data-x-domain").split(","))
    in_range = [s for s in steps if low <= s <= high]
    assert len(in_range) > 10
    # Every record of the range is drawn, fetched with that step range.
    assert int(canvas.get_attribute("data-points-in-view")) == len(in_range)
    zoomed = [urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
              for url in requests[before:] if "variable_stats" in url]
    assert any(q.get("start") == [str(math.ceil(low))]
               and q.get("end") == [str(math.floor(high))] for q in zoomed)
    # The other charts keep their overview.
    other = frame.locator(f"canvas[data-view=layer-stats][data-run='{RUN}']").first
    assert other.get_attribute("data-resolution") == "envelope"

    canvas.dblclick(position={"x": area["left"] + 10, "y": area["top"] + 10})
    assert canvas.get_attribute("data-zoomed") == "false"
    assert canvas.get_attribute("data-resolution") == "envelope"
    assert problems == []


def _flow_bars(frame):
    """The tooltip lines of every bar pair of the flow chart."""
    canvas = frame.locator(f"canvas[data-view=flow][data-run='{RUN}']")
    return frame.evaluate(
        """(run) => document.querySelector(`canvas[data-view=flow][data-run="${run}"]`)
             .hoverTargets.map((target) => target.lines())""", RUN), canvas


def _expected_bar(base, step, name):
    query = urllib.parse.urlencode({"run": RUN, "source": "training",
                                    "stats": "mean_abs,max_abs",
                                    "start": step, "end": step})
    body = harness.get_json(
        f"{base}{harness.PLUGIN_PREFIX}/variable_stats?{query}")
    variable = next(v for v in body["variables"] if v["name"] == name)
    return variable["values"][0]


def _formatted(value):
    """charts.formatNumber of a finite number."""
    magnitude = abs(value)
    if magnitude >= 1e5 or magnitude < 1e-3:
        mantissa, exponent = f"{value:.3e}".split("e")
        return f"{mantissa}e{int(exponent):+d}"
    return f"{float(f'{value:.4g}'):g}" if value else "0"


def test_flow_shows_exact_values_of_the_step(tab):
    """The flow view draws one step's own vectors: the latest from the
    envelope's last bucket (the last step alone), another step fetched
    alone when the slider moves to it."""
    base, frame, page, problems, requests = tab
    last = 4 * EPOCHS
    label = frame.locator("[data-role=flow-step-label]")
    assert label.text_content().startswith(f"{last} /")
    bars, canvas = _flow_bars(frame)
    name = bars[0][0]
    mean_abs, max_abs = _expected_bar(base, last, name)
    assert f"mean_abs: {_formatted(mean_abs)}" in bars[0]
    assert f"max_abs: {_formatted(max_abs)}" in bars[0]

    before = len(requests)
    slider = frame.locator("[data-control=flow-step]")
    slider.scroll_into_view_if_needed()
    slider.focus()
    page.keyboard.press("Home")
    frame.wait_for_function(
        "() => document.querySelector('[data-role=flow-step-label]')"
        ".textContent.startsWith('1 /')", timeout=TIMEOUT_MS)
    frame.wait_for_function(
        """(run) => document.querySelector(`canvas[data-view=flow][data-run="${run}"]`)
             .hoverTargets[0].lines()[1].includes('step 1,')""", arg=RUN,
        timeout=TIMEOUT_MS)
    bars, _ = _flow_bars(frame)
    mean_abs, max_abs = _expected_bar(base, 1, name)
    assert f"mean_abs: {_formatted(mean_abs)}" in bars[0]
    assert any("variable_stats" in url and "start=1&" in url
               for url in requests[before:])
    pixels = frame.evaluate(harness.CANVAS_PIXELS_JS, "flow")
    assert pixels and all(c["saturated"] > 0 for c in pixels)
    assert problems == []
