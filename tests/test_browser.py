"""The Gradients tab in headless Chromium, served by a real TensorBoard.

TensorBoard's own page is opened on ``#gradients``; the tab lives in the
iframe TensorBoard creates for dynamic plugins. Both data loaders are
exercised (``--load_fast=false``: Python; ``true``: the Rust data server).
"""

import pathlib
import re

import pytest

from tests import browser_harness as harness
from tests import logdirs

HOSTILE_RUN = "<img src=x onerror=window.__pwned=1>/train"
# Run -> epochs of tests.logdirs.standard_logdir, as TensorBoard names runs.
STANDARD_RUNS = {
    "tanh/train": 4,
    "relu/train": 4,
    "exploding/train": 3,
    HOSTILE_RUN: 2,
}
VIEWS = ("norms", "highest", "layer-stats", "flow", "steps", "heatmap")
TIMEOUT_MS = 60000


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    return logdirs.standard_logdir(tmp_path_factory.mktemp("browser_logdir"))


@pytest.fixture(scope="module", params=[False, True],
                ids=["load_fast=false", "load_fast=true"])
def tensorboard_url(request, logdir, chromium_path):
    with harness.tensorboard(logdir, load_fast=request.param,
                             expected_runs=STANDARD_RUNS) as base:
        yield base


class Tab:
    """TensorBoard's page on the Gradients tab, with what it logged."""

    def __init__(self, page, frame, problems):
        self.page = page
        self.frame = frame
        self.problems = problems

    def pixels(self, view):
        return self.frame.evaluate(harness.CANVAS_PIXELS_JS, view)

    def assert_no_console_errors(self):
        assert self.problems == [], "console errors / page errors:\n" + "\n".join(self.problems)

    def assert_no_error_boxes(self):
        messages = self.frame.locator(".error").all_text_contents()
        assert messages == [], f"error boxes shown: {messages}"


@pytest.fixture
def tab(browser, tensorboard_url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems = harness.page_problems(page)
    frame = harness.open_gradients_tab(page, tensorboard_url, TIMEOUT_MS)
    yield Tab(page, frame, problems)
    page.close()


def test_gradients_tab_is_listed(tab):
    tab_link = tab.page.get_by_text("Gradients", exact=True).first
    tab_link.wait_for(timeout=TIMEOUT_MS)
    assert tab_link.is_visible()
    tab.assert_no_console_errors()


def test_every_view_draws_data(tab):
    tab.assert_no_error_boxes()
    for view in VIEWS:
        canvases = tab.pixels(view)
        assert canvases, f"no canvas for view {view!r}"
        for canvas in canvases:
            assert canvas["width"] > 0 and canvas["height"] > 0, (view, canvas)
            assert canvas["drawn"] > 0, f"{view}: blank canvas {canvas}"
            assert canvas["saturated"] > 20, f"{view}: only axes, no data {canvas}"
    assert tab.pixels("heatmap-colorbar")[0]["saturated"] > 100
    tab.assert_no_console_errors()


def test_recurrent_section_says_how_to_record(tab):
    """MLP runs: the recurrent section is one line saying what to do."""
    message = tab.frame.locator("#view-recurrent .notice")
    assert "pass probe_data to GradientTensorBoard" in message.inner_text()
    assert tab.frame.locator("#view-recurrent canvas, #view-recurrent [data-control]").count() == 0
    tab.assert_no_console_errors()


def test_epoch_slider_changes_heatmap(tab):
    frame = tab.frame
    slider = frame.locator("#epoch-slider")
    assert slider.get_attribute("data-control") == "epoch-slider"
    assert slider.input_value() == "1"  # the default run has epochs 0 and 1
    before = frame.evaluate(harness.HEATMAP_DIGEST_JS)
    slider.focus()
    slider.press("Home")
    frame.wait_for_function(
        "(before) => document.querySelector('[data-role=epoch-label]').textContent.startsWith('0 ')"
        f" && ({harness.HEATMAP_DIGEST_JS})() !== before",
        arg=before, timeout=TIMEOUT_MS)
    assert slider.input_value() == "0"
    tab.assert_no_console_errors()


def test_play_button_animates_epochs(tab):
    frame = tab.frame
    label = frame.locator("[data-role=epoch-label]")
    start = label.text_content()
    play = frame.locator("#play-button")
    play.click()
    assert play.get_attribute("aria-pressed") == "true"
    frame.wait_for_function(
        "(start) => document.querySelector('[data-role=epoch-label]').textContent !== start",
        arg=start, timeout=TIMEOUT_MS)
    play.click()
    assert play.get_attribute("aria-pressed") == "false"
    tab.assert_no_console_errors()


def test_heatmap_hover_reads_out_the_cell(tab):
    frame = tab.frame
    canvas = frame.locator("canvas[data-view=heatmap]").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    tab.page.mouse.move(box["x"] + 2, box["y"] + 2)
    tooltip = frame.locator(".tooltip")
    tooltip.wait_for(state="visible", timeout=TIMEOUT_MS)
    text = tooltip.inner_text()
    assert "block (0, 0)" in text and "value" in text, text
    tab.page.mouse.move(0, 0)
    tooltip.wait_for(state="hidden", timeout=TIMEOUT_MS)
    tab.assert_no_console_errors()


def test_two_runs_side_by_side(tab):
    frame = tab.frame
    harness.select_runs(frame, ["relu/train", "tanh/train"], TIMEOUT_MS)
    for view in VIEWS:
        panels = frame.locator(f"[data-section='{view}'] .panel")
        assert panels.count() == 2, view
        first, second = panels.nth(0).bounding_box(), panels.nth(1).bounding_box()
        assert abs(first["y"] - second["y"]) < 1, f"{view}: panels not in one row"
        assert second["x"] >= first["x"] + first["width"], f"{view}: panels overlap"
        runs = {canvas["run"] for canvas in tab.pixels(view)}
        assert runs == {"relu/train", "tanh/train"}, (view, runs)
        assert all(canvas["saturated"] > 20 for canvas in tab.pixels(view)), view
    tab.assert_no_error_boxes()
    tab.assert_no_console_errors()


def test_hostile_run_name_is_text(tab):
    frame = tab.frame
    picker = frame.locator("#run-picker")
    assert picker.get_attribute("data-control") == "run-picker"
    assert HOSTILE_RUN in picker.inner_text()
    # The hostile run is selected by default (it sorts first): its name is
    # also in every panel header.
    assert HOSTILE_RUN in frame.locator("#view-norms .panel-header").first.inner_text()
    assert frame.locator("img").count() == 0
    assert frame.evaluate("typeof window.__pwned") == "undefined"
    assert tab.page.evaluate("typeof window.__pwned") == "undefined"
    tab.assert_no_console_errors()


def test_nan_run_has_warning_badge(tab):
    badge = tab.frame.locator(
        "#run-picker label[data-run='exploding/train'] [data-badge=non-finite]")
    badge.wait_for(timeout=TIMEOUT_MS)
    assert "NaN" in badge.inner_text()
    for run in ("relu/train", "tanh/train"):
        assert tab.frame.locator(
            f"#run-picker label[data-run='{run}'] [data-badge]").count() == 0
    tab.assert_no_console_errors()


def test_controls_do_not_fail(tab):
    """Every toggle, the filter, the source picker and refresh: no errors."""
    frame = tab.frame
    harness.select_runs(frame, list(STANDARD_RUNS), TIMEOUT_MS)

    def redrawn(action):
        frame.evaluate("document.body.dataset.rendered = 'pending'")
        action()
        frame.wait_for_function(
            "() => document.body.dataset.rendered === 'true'", timeout=TIMEOUT_MS)

    toggles = frame.locator(
        "input[type=checkbox][data-control]"
        ":not([data-control=auto-refresh]):not([data-control=run-checkbox])")
    for index in range(toggles.count()):
        toggles.nth(index).click()
    # View toggles redraw in place; a global redraw settles them all.
    redrawn(lambda: frame.locator("#refresh-button").click())
    for view in VIEWS:
        assert tab.pixels(view), view

    redrawn(lambda: frame.locator("#variable-filter").fill("dense_0/"))
    names = frame.locator("#view-heatmap .variable-name").all_text_contents()
    assert names and all("dense_0/" in name for name in names), names

    # Not a valid regex: used as a substring, no error.
    redrawn(lambda: frame.locator("#variable-filter").fill("kernel["))
    assert frame.locator("#view-heatmap .variable-name").count() == 0

    redrawn(lambda: frame.locator("#variable-filter").fill(""))
    frame.locator("#heatmap-mode").select_option("one")
    frame.locator("#heatmap-variable").select_option("output/kernel")
    frame.wait_for_function(
        """() => [...document.querySelectorAll('#view-heatmap .variable-name')]
                   .every((node) => node.textContent === 'output/kernel')""", timeout=TIMEOUT_MS)
    frame.wait_for_function(
        "() => document.querySelectorAll('#view-heatmap canvas[data-view=heatmap]').length"
        f" === 3 * {len(STANDARD_RUNS)}", timeout=TIMEOUT_MS)

    source = frame.locator("#source-picker")
    assert source.is_visible()
    redrawn(lambda: source.select_option("probe"))
    # The hostile run was trained without a probe: a notice, not an error.
    assert frame.get_by_text("has no probe gradients").count() > 0
    tab.assert_no_error_boxes()
    tab.assert_no_console_errors()


def test_backend_error_is_shown(browser, tensorboard_url):
    """A failing route's message appears in the view, not only in the console."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.route("**/data/plugin/gradients/variable_stats*", lambda route: route.fulfill(
            status=400, content_type="text/plain",
            body="Invalid argument: injected failure for the test"))
        frame = harness.open_gradients_tab(page, tensorboard_url, TIMEOUT_MS)
        box = frame.locator("#view-highest .error")
        box.wait_for(timeout=TIMEOUT_MS)
        assert "injected failure for the test" in box.inner_text()
        assert box.is_visible()
        # The views that do not use the route still draw.
        assert all(canvas["saturated"] > 20 for canvas in
                   frame.evaluate(harness.CANVAS_PIXELS_JS, "norms"))
    finally:
        page.close()


def test_empty_logdir_says_what_to_do(browser, chromium_path, tmp_path):
    with harness.tensorboard(tmp_path) as base:
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        problems = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        try:
            frame = harness.open_gradients_tab(page, base, TIMEOUT_MS)
            message = frame.get_by_text("No gradient data in this run: pass GradientTensorBoard to fit")
            assert message.is_visible()
            assert frame.locator("canvas[data-view=norms]").count() == 0
            assert problems == []
        finally:
            page.close()


def test_frontend_never_writes_markup():
    """Logdir strings reach the page only as text: no HTML parsing APIs."""
    frontend = pathlib.Path(__file__).parent.parent / "tb_gradients" / "frontend"
    sources = sorted(frontend.rglob("*.js"))
    assert sources
    forbidden = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(")
    for path in sources:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not forbidden.search(line), f"{path.relative_to(frontend)}:{number}: {line.strip()}"
