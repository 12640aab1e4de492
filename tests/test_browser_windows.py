"""A window run and an epoch run side by side in the Gradients tab.

A real TensorBoard serves a logdir with a run recorded per window of
optimizer steps (``gradient_window=3``, 16 steps: records at steps 3, 6,
9, 12, 15 and the partial last window at 16) and
a run recorded per epoch; headless Chromium shows both. Each panel has its
own x axis ("step" / "epoch"), the heatmap has a step slider over the
recorded steps, and dragging across a line chart zooms into an x range
(double-click: the whole range again).
"""

import os

import pytest

from tests import browser_harness as harness
from tests import logdirs

WINDOW = 3
WINDOW_RUN = "windows/train"
EPOCH_RUN = "epochs/train"
STEPS = [3, 6, 9, 12, 15, 16]  # 4 epochs of 4 steps, windows across epochs
TIMEOUT_MS = 60000
LINE_VIEWS = ("norms", "highest", "layer-stats")


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("windows_logdir")
    logdirs.train_mlp_run(os.path.join(root, "windows"), epochs=4,
                          source="training", gradient_window=WINDOW,
                          heatmap_cells=16, histograms=False)
    logdirs.train_mlp_run(os.path.join(root, "epochs"), epochs=3,
                          source="training", heatmap_cells=16,
                          histograms=False)
    return root


@pytest.fixture(scope="module")
def tab(logdir, browser):
    expected = {WINDOW_RUN: len(STEPS), EPOCH_RUN: 3}
    with harness.tensorboard(logdir, expected_runs=expected) as base:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        problems = harness.page_problems(page)
        frame = harness.open_gradients_tab(page, base, TIMEOUT_MS)
        harness.select_runs(frame, [WINDOW_RUN, EPOCH_RUN], TIMEOUT_MS)
        yield frame, page, problems
        page.close()


def canvases(frame, view):
    return frame.evaluate(
        """(view) => [...document.querySelectorAll(`canvas[data-view="${view}"]`)]
             .map((canvas) => ({run: canvas.dataset.run, label: canvas.dataset.xLabel,
                                domain: canvas.dataset.xDomain}))""", view)


def test_runs_list_their_window(tab):
    frame, _, problems = tab
    picker = frame.locator("#run-picker")
    window_label = picker.locator(f"label[data-run='{WINDOW_RUN}']").inner_text()
    epoch_label = picker.locator(f"label[data-run='{EPOCH_RUN}']").inner_text()
    assert f"{len(STEPS)} windows of {WINDOW} steps" in window_label
    assert "3 epochs" in epoch_label
    assert problems == []


@pytest.mark.parametrize("view", LINE_VIEWS)
def test_each_panel_has_its_own_axis(tab, view):
    frame, _, problems = tab
    charts = canvases(frame, view)
    assert {chart["run"] for chart in charts} == {WINDOW_RUN, EPOCH_RUN}
    for chart in charts:
        low, high = (float(v) for v in chart["domain"].split(","))
        if chart["run"] == WINDOW_RUN:
            assert chart["label"] == "step"
            assert low <= STEPS[0] and high >= STEPS[-1]
        else:
            assert chart["label"] == "epoch"
            assert low <= 0 and 2 <= high < STEPS[-1]
    assert frame.locator(".error").all_text_contents() == []
    assert problems == []


def test_steps_view_draws_the_window_run_against_the_step(tab):
    frame, _, problems = tab
    charts = [c for c in canvases(frame, "steps") if c["run"] == WINDOW_RUN]
    assert charts and all(c["label"] == "step" for c in charts)
    for chart in charts:
        low, high = (float(v) for v in chart["domain"].split(","))
        assert low == pytest.approx(0.5)
        assert high == pytest.approx(STEPS[-1] + 0.5)
    assert problems == []


def test_heatmap_step_slider_moves_over_the_recorded_steps(tab):
    frame, _, problems = tab
    step_slider = frame.locator("#step-slider")
    epoch_slider = frame.locator("#epoch-slider")
    assert step_slider.is_visible() and epoch_slider.is_visible()
    assert step_slider.get_attribute("max") == str(len(STEPS) - 1)
    assert epoch_slider.get_attribute("max") == "2"
    label = frame.locator("[data-role=step-label]")
    title = frame.locator(
        f"#view-heatmap .panel[data-run='{WINDOW_RUN}'] .heatmap-title .muted").nth(1)
    assert label.text_content() == f"{STEPS[-1]} / {STEPS[-1]}"
    assert title.text_content() == f"step {STEPS[-1]}"
    shown = []
    step_slider.focus()
    step_slider.press("Home")
    for index, step in enumerate(STEPS):
        if index:
            step_slider.press("ArrowRight")
        frame.wait_for_function(
            """([step, last]) => document.querySelector('[data-role=step-label]')
                 .textContent === `${step} / ${last}`""",
            arg=[step, STEPS[-1]], timeout=TIMEOUT_MS)
        frame.wait_for_function(
            """([run, step]) => [...document.querySelectorAll(
                 `#view-heatmap .panel[data-run="${run}"] .heatmap-title .muted`)]
                 .some((node) => node.textContent === `step ${step}`)""",
            arg=[WINDOW_RUN, step], timeout=TIMEOUT_MS)
        shown.append(step)
    assert shown == STEPS
    # The epoch run's slider did not move.
    assert frame.locator("[data-role=epoch-label]").text_content() == "2 / 2"
    assert problems == []


def test_heatmap_play_visits_the_steps(tab):
    frame, _, problems = tab
    play = frame.locator("#step-play-button")
    seen = set()
    play.click()
    try:
        for _ in range(3 * len(STEPS)):
            frame.wait_for_timeout(250)
            text = frame.locator("[data-role=step-label]").text_content()
            seen.add(int(text.split(" / ")[0]))
            if seen == set(STEPS):
                break
    finally:
        play.click()
    assert seen == set(STEPS)
    assert problems == []


def test_drag_zooms_and_double_click_resets(tab):
    frame, page, problems = tab
    canvas = frame.locator(f"canvas[data-view=highest][data-run='{WINDOW_RUN}']")
    canvas.scroll_into_view_if_needed()
    whole = canvas.get_attribute("data-x-domain")
    low, high = (float(v) for v in whole.split(","))
    box = canvas.bounding_box()
    area = frame.evaluate(
        """(run) => {
             const canvas = document.querySelector(`canvas[data-view=highest][data-run="${run}"]`);
             return canvas.plotArea;
           }""", WINDOW_RUN)
    y = box["y"] + (area["top"] + area["bottom"]) / 2
    x0 = box["x"] + area["left"] + 0.3 * area["width"]
    x1 = box["x"] + area["left"] + 0.6 * area["width"]
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, y, steps=3)
    page.mouse.move(x1, y, steps=3)
    page.mouse.up()
    assert canvas.get_attribute("data-zoomed") == "true"
    zoomed = [float(v) for v in canvas.get_attribute("data-x-domain").split(",")]
    span = high - low
    assert zoomed[0] == pytest.approx(low + 0.3 * span, abs=0.02 * span)
    assert zoomed[1] == pytest.approx(low + 0.6 * span, abs=0.02 * span)
    # The other charts keep their range.
    other = frame.locator(f"canvas[data-view=highest][data-run='{EPOCH_RUN}']")
    assert other.get_attribute("data-zoomed") == "false"
    canvas.dblclick(position={"x": area["left"] + 10, "y": area["top"] + 10})
    assert canvas.get_attribute("data-zoomed") == "false"
    assert canvas.get_attribute("data-x-domain") == whole
    assert problems == []


def test_tooltip_says_step(tab):
    frame, page, problems = tab
    canvas = frame.locator(f"canvas[data-view=norms][data-run='{WINDOW_RUN}']")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    # Hover along the chart's middle until the readout names a step.
    tooltip = frame.locator(".tooltip")
    texts = []
    for fraction in [i / 40 for i in range(41)]:
        area = frame.evaluate(
            """(run) => document.querySelector(
                 `canvas[data-view=norms][data-run="${run}"]`).plotArea""", WINDOW_RUN)
        for row in (0.1, 0.3, 0.5, 0.7, 0.9):
            page.mouse.move(box["x"] + area["left"] + fraction * area["width"],
                            box["y"] + area["top"] + row * area["height"])
            if tooltip.is_visible():
                texts.append(tooltip.inner_text())
        if texts:
            break
    page.mouse.move(0, 0)
    assert texts, "no tooltip over the chart"
    assert any("step " in text for text in texts), texts
    assert not any("epoch " in text for text in texts), texts
    assert problems == []
