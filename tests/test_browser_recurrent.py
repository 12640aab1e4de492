"""The Gradients tab's "Recurrent layers" section in headless Chromium.

A real TensorBoard serves `tests.logdirs.recurrent_logdir` (an LSTM run and
a GRU run with the same layer names: `encoder`, a `bidirectional` GRU and
`last`, a SimpleRNN without time axis; sample 0 is masked after timestep 5)
plus a run with a hostile name that also has recurrent data.
"""

import os
import time
import urllib.parse

import pytest

from tests import browser_harness as harness
from tests import logdirs

HOSTILE_RUN = "<img src=x onerror=window.__pwned=1>/train"
RUNS = {"lstm/train": 3, "gru/train": 3, HOSTILE_RUN: 2}
COMPARED = ["gru/train", "lstm/train"]
TIMEOUT_MS = 60000
RECURRENT_VIEWS = ("timestep-norm", "timestep-heatmap", "channel-grid", "gates")

# A digest of the cells (plot area only: not the title or the colour bar)
# of every timestep heatmap, to tell drawings apart.
CELLS_DIGEST_JS = """
() => [...document.querySelectorAll('canvas[data-view="timestep-heatmap"]')].map((canvas) => {
  const area = canvas.plotArea;
  if (!area) return 'none';
  const ratio = canvas.width / canvas.cssWidth;
  const {data} = canvas.getContext('2d').getImageData(Math.round(area.left * ratio),
    Math.round(area.top * ratio), Math.round(area.width * ratio), Math.round(area.height * ratio));
  let hash = 0;
  for (let i = 0; i < data.length; i++) hash = (hash * 31 + data[i]) >>> 0;
  return `${canvas.dataset.run}:${hash}`;
}).join(',')
"""


@pytest.fixture(scope="module")
def logdir(tmp_path_factory, chromium_path):
    root = logdirs.recurrent_logdir(tmp_path_factory.mktemp("recurrent_browser"))
    logdirs.train_recurrent_run(
        os.path.join(root, "<img src=x onerror=window.__pwned=1>"),
        encoder="GRU", epochs=2)
    return root


def _wait_for_timesteps(base):
    """Until every run serves the timestep gradients of all its epochs (the
    loaders read a run's series one by one)."""
    deadline = time.monotonic() + harness.STARTUP_LIMIT_S
    while time.monotonic() < deadline:
        complete = True
        for run, epochs in RUNS.items():
            query = urllib.parse.urlencode({"run": run})
            layers = harness.get_json(
                f"{base}{harness.PLUGIN_PREFIX}/timestep_layers?{query}")["layers"]
            complete &= len(layers) == 3 and all(
                len(layer["epochs"]) == epochs for layer in layers)
        if complete:
            return
        time.sleep(0.5)
    raise RuntimeError("TensorBoard did not load the timestep gradients")


@pytest.fixture(scope="module", params=[False, True],
                ids=["load_fast=false", "load_fast=true"])
def tensorboard_url(request, logdir):
    with harness.tensorboard(logdir, load_fast=request.param,
                             expected_runs=RUNS) as base:
        _wait_for_timesteps(base)
        yield base


class Tab:
    def __init__(self, page, frame, problems):
        self.page = page
        self.frame = frame
        self.problems = problems

    def pixels(self, view):
        return self.frame.evaluate(harness.CANVAS_PIXELS_JS, view)

    def cells(self):
        return self.frame.evaluate(CELLS_DIGEST_JS)

    def wait_cells_change(self, before):
        self.frame.wait_for_function(
            f"(before) => ({CELLS_DIGEST_JS})() !== before", arg=before,
            timeout=TIMEOUT_MS)

    def assert_clean(self):
        assert self.problems == [], "console errors / page errors:\n" + "\n".join(self.problems)
        errors = self.frame.locator("#view-recurrent .error").all_text_contents()
        assert errors == [], f"error boxes shown: {errors}"


@pytest.fixture
def tab(browser, tensorboard_url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems = harness.page_problems(page)
    frame = harness.open_gradients_tab(page, tensorboard_url, TIMEOUT_MS)
    harness.select_runs(frame, COMPARED, TIMEOUT_MS)
    yield Tab(page, frame, problems)
    page.close()


def test_recurrent_views_draw_runs_side_by_side(tab):
    frame = tab.frame
    assert frame.locator("#recurrent-layer").input_value() == "encoder"
    for view in RECURRENT_VIEWS:
        canvases = tab.pixels(view)
        assert {canvas["run"] for canvas in canvases} == set(COMPARED), view
        for canvas in canvases:
            assert canvas["saturated"] > 20, f"{view}: no data drawn {canvas}"
    for block in ("norm", "heatmap", "channels", "gates"):
        panels = frame.locator(f"#recurrent-{block} .panel")
        assert panels.count() == 2, block
        first, second = panels.nth(0).bounding_box(), panels.nth(1).bounding_box()
        assert abs(first["y"] - second["y"]) < 1, f"{block}: panels not in one row"
        assert second["x"] >= first["x"] + first["width"], f"{block}: panels overlap"
    # The norm per timestep: the chosen epoch's and every epoch's overlaid.
    assert frame.locator("canvas[data-view=timestep-norm][data-chart=epoch]").count() == 2
    assert frame.locator("canvas[data-view=timestep-norm][data-chart=epochs]").count() == 2
    tab.assert_clean()


def test_epoch_slider_changes_the_heatmap(tab):
    frame = tab.frame
    slider = frame.locator("#recurrent-epoch")
    assert slider.get_attribute("data-control") == "recurrent-epoch"
    assert slider.input_value() == "2"
    before = tab.cells()
    slider.focus()
    slider.press("Home")
    tab.wait_cells_change(before)
    assert frame.locator("[data-role=recurrent-epoch-label]").text_content().startswith("0 ")
    assert set(frame.locator("canvas[data-view=timestep-heatmap]").evaluate_all(
        "(canvases) => canvases.map((canvas) => canvas.dataset.epoch)")) == {"0"}
    tab.assert_clean()


def test_sample_picker_changes_the_heatmap(tab):
    frame = tab.frame
    before = tab.cells()
    frame.locator("#recurrent-sample").select_option("0")
    tab.wait_cells_change(before)
    # Sample 0 is masked after timestep 5: its hatched timesteps show in
    # the heatmap's readout.
    canvas = frame.locator("canvas[data-view=timestep-heatmap][data-run='lstm/train']")
    canvas.scroll_into_view_if_needed()
    area = canvas.evaluate("(canvas) => canvas.plotArea")
    box = canvas.bounding_box()
    tab.page.mouse.move(box["x"] + area["left"] + area["width"] - 3,
                        box["y"] + area["top"] + 3)
    tooltip = frame.locator(".tooltip")
    tooltip.wait_for(state="visible", timeout=TIMEOUT_MS)
    text = tooltip.inner_text()
    assert "sample 0" in text and "timestep 9" in text and "masked" in text, text
    tab.assert_clean()


def test_reflect_changes_the_bidirectional_heatmap(tab):
    frame = tab.frame
    frame.locator("#recurrent-layer").select_option("bidirectional")
    frame.wait_for_function(
        """() => [...document.querySelectorAll('canvas[data-view="timestep-heatmap"]')]
                   .filter((canvas) => canvas.dataset.layer === 'bidirectional'
                                       && canvas.plotArea).length === 2""",
        timeout=TIMEOUT_MS)
    reflect = frame.locator("[data-control=recurrent-reflect]")
    assert reflect.is_visible()
    # One sample: its masked timesteps move to the other end of the
    # backward half when it is reflected.
    before = tab.cells()
    frame.locator("#recurrent-sample").select_option("0")
    tab.wait_cells_change(before)
    before = tab.cells()
    reflect.check()
    tab.wait_cells_change(before)
    # One gate chart per fused weight: 3 roles x 2 directions, per run.
    assert len(tab.pixels("gates")) == 2 * 6
    tab.assert_clean()


def test_layer_without_time_axis_shows_the_scatter(tab):
    frame = tab.frame
    frame.locator("#recurrent-layer").select_option("last")
    frame.wait_for_function(
        "() => document.querySelectorAll('canvas[data-view=channel-scatter]').length === 2",
        timeout=TIMEOUT_MS)
    frame.wait_for_function(
        """() => [...document.querySelectorAll('canvas[data-view=channel-scatter]')]
                   .every((canvas) => canvas.hoverTargets && canvas.hoverTargets.length > 0)""",
        timeout=TIMEOUT_MS)
    scatter = tab.pixels("channel-scatter")
    assert {canvas["run"] for canvas in scatter} == set(COMPARED)
    assert all(canvas["saturated"] > 20 for canvas in scatter), scatter
    assert frame.locator("canvas[data-view=timestep-heatmap]").count() == 0
    # A SimpleRNN has no gates: said, not an error.
    assert frame.get_by_text("has no gates").count() == 2
    tab.assert_clean()


def test_hostile_run_name_is_text(tab):
    frame = tab.frame
    harness.select_runs(frame, [HOSTILE_RUN, "lstm/train"], TIMEOUT_MS)
    headers = frame.locator("#recurrent-norm .panel-header").all_text_contents()
    assert any(HOSTILE_RUN in header for header in headers), headers
    assert all(canvas["saturated"] > 20 for canvas in tab.pixels("timestep-heatmap"))
    assert frame.locator("img").count() == 0
    assert frame.evaluate("typeof window.__pwned") == "undefined"
    assert tab.page.evaluate("typeof window.__pwned") == "undefined"
    tab.assert_clean()


def test_backend_error_is_shown(browser, tensorboard_url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.route(lambda url: "/data/plugin/gradients/timesteps?" in url, lambda route: route.fulfill(
            status=404, content_type="text/plain",
            body="Not found: injected failure for the test"))
        frame = harness.open_gradients_tab(page, tensorboard_url, TIMEOUT_MS)
        box = frame.locator("#view-recurrent .error").first
        box.wait_for(timeout=TIMEOUT_MS)
        assert "injected failure for the test" in box.inner_text()
        # The gates do not use the route: they still draw.
        assert all(canvas["saturated"] > 20 for canvas in
                   frame.evaluate(harness.CANVAS_PIXELS_JS, "gates"))
    finally:
        page.close()
