"""The tab for deep models: a transformer of 12 repeated blocks (198
variables), one of them damped, recorded in 6 windows of 3 steps.

The gradient map's codes are checked against the event files (each
variable's RMS recomputed from its recorded L2 norm and size), the depth
and role of every variable against the names the model was built with,
and the tab in headless Chromium: every variable's row drawn, hover naming
the variable and window under the pointer, a click opening its heatmap,
depth profiles one line per role, all restored from the URL.
"""

import base64
import urllib.parse

import numpy as np
import pytest
from demo import experiments
from werkzeug import test as werkzeug_test

from tb_gradients.format import metadata
from tb_gradients.format import variable_stats
from tb_gradients.plugin import gradient_map

from tests import browser_harness
from tests import eventfiles
from tests.test_plugin_wsgi import assert_error
from tests.test_plugin_wsgi import get_json
from tests.test_plugin_wsgi import make_app

RUN = "deep/train"
BLOCKS = 12
DAMPED = 7
WINDOW = 3
# Per block: two layer norms (2 each), attention (query, key, value and
# output, kernel and bias), a two-layer MLP (kernel and bias each).
PER_BLOCK = 2 + 8 + 2 + 4
TIMEOUT_MS = 60000


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("deep")
    x, y = experiments.first_token(96)
    model = experiments.deep_transformer(blocks=BLOCKS, width=8,
                                         damped_block=DAMPED)
    experiments._fit(model, x, y, str(root), "deep", 3, 16,
                     gradient_window=WINDOW, histograms=False,
                     heatmap_cells=64)
    return root


@pytest.fixture(scope="module")
def client(logdir):
    app, _, _ = make_app(logdir)
    return werkzeug_test.Client(app)


def _codes(body):
    codes = np.frombuffer(base64.b64decode(body["codes"]), np.uint8)
    return codes.reshape(len(body["variables"]), len(body["steps"]))


def test_variables_have_their_depth_and_role(client):
    body = get_json(client, "/variables", run=RUN, source="training")
    assert body["structure"] is True
    variables = body["variables"]
    assert len(variables) == BLOCKS * PER_BLOCK + 2 + 2 + 2
    by_name = {v["name"]: v for v in variables}
    for block in (0, 7, BLOCKS - 1):
        query = by_name[f"block{block}_attn/query/kernel"]
        assert query["depth"] == block
        assert query["role"] == "block#_attn/query/kernel"
    for outside in ("token_embedding/embeddings", "final_norm/gamma",
                    "head/kernel"):
        assert by_name[outside]["depth"] is None
        assert by_name[outside]["role"] == outside
    roles = {v["role"] for v in variables if v["depth"] is not None}
    assert len(roles) == PER_BLOCK


def test_the_gradient_map_is_every_variables_rms(client, logdir):
    body = get_json(client, "/gradient_map", run=RUN, source="training")
    series = eventfiles.load(logdir / "deep" / "train")
    names = [v["name"] for v in body["variables"]]
    described = get_json(client, "/variables", run=RUN, source="training")
    assert names == [v["name"] for v in described["variables"]]
    assert body["stat"] == "rms" and body["structure"] is True
    codes = _codes(body)
    l2 = variable_stats.VARIABLE_STAT_NAMES.index("l2")
    size = variable_stats.VARIABLE_STAT_NAMES.index("size")
    expected = np.array([[
        series[metadata.variable_stats_tag("training", name)][step][l2]
        / np.sqrt(series[metadata.variable_stats_tag("training", name)][
            step][size])
        for step in body["steps"]] for name in names])
    assert body["steps"] == sorted(series[metadata.variable_stats_tag(
        "training", names[0])])
    positive = expected > 0
    assert np.isfinite(expected).all()
    # zero gradients (the attention key bias) are the zero code
    assert (codes[~positive] == gradient_map.CODE_ZERO).all()
    logs = np.log10(expected[positive])
    assert body["low"] == pytest.approx(logs.min())
    assert body["high"] == pytest.approx(logs.max())
    level = (body["high"] - body["low"]) / (
        gradient_map.CODE_LAST - gradient_map.CODE_FIRST)
    decoded = body["low"] + (codes[positive].astype(float)
                             - gradient_map.CODE_FIRST) * level
    np.testing.assert_allclose(decoded, logs, atol=level / 2 + 1e-9)
    # the damped block is decades below its neighbours, in every window
    rms = np.where(positive, expected, np.nan)
    kernels = {block: names.index(f"block{block}_mlp_out/kernel")
               for block in (DAMPED - 1, DAMPED, DAMPED + 1)}
    for neighbour in (DAMPED - 1, DAMPED + 1):
        assert (np.log10(rms[kernels[neighbour]])
                - np.log10(rms[kernels[DAMPED]]) > 2).all()


def test_the_gradient_map_of_another_statistic(client):
    body = get_json(client, "/gradient_map", run=RUN, source="training",
                    stat="max_abs")
    assert body["stat"] == "max_abs"
    assert_error(client, 400, "/gradient_map", ["stat", "'weight_l2'"],
                 run=RUN, source="training", stat="weight_l2")


def test_codes_mark_nan_inf_zero_and_missing():
    values = np.array([[1.0, np.nan, np.inf], [0.0, 100.0, 5.0]])
    present = np.array([[True, True, True], [True, True, False]])
    codes, low, high = gradient_map.encode_log_codes(values, present)
    assert (low, high) == (0.0, 2.0)
    assert codes.tolist() == [
        [gradient_map.CODE_FIRST, gradient_map.CODE_NAN,
         gradient_map.CODE_INF],
        [gradient_map.CODE_ZERO, gradient_map.CODE_LAST,
         gradient_map.CODE_MISSING]]


# -- the tab ---------------------------------------------------------------


@pytest.fixture(scope="module")
def server(logdir, chromium_path):
    with browser_harness.tensorboard(logdir) as base:
        browser_harness.wait_for_settled_runs(base)
        yield base


@pytest.fixture
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = browser_harness.launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems = browser_harness.page_problems(page)
            yield page, problems
        finally:
            browser.close()


def _map_canvas(frame):
    canvas = frame.locator(f"canvas[data-view=gradient-map][data-run='{RUN}']")
    canvas.scroll_into_view_if_needed()
    return canvas, canvas.evaluate("(canvas) => ({...canvas.dataset})")


def _cell_point(canvas, data, row, column):
    """The page coordinates of a cell's centre."""
    box = canvas.bounding_box()
    rows, columns = int(data["rows"]), int(data["columns"])
    x = float(data["plotLeft"]) + (column + 0.5) * float(data["plotWidth"]) / columns
    y = float(data["plotTop"]) + (row + 0.5) * float(data["plotHeight"]) / rows
    return box["x"] + x, box["y"] + y


def _url_state(page):
    fragment = urllib.parse.urlsplit(page.url).fragment
    parts = dict(part.split("=", 1) for part in fragment.split("&")
                 if "=" in part)
    return urllib.parse.parse_qs(urllib.parse.unquote(parts["gradients"]))


def test_the_map_names_what_is_under_the_pointer_and_opens_it(page, server,
                                                              client):
    page, problems = page
    frame = browser_harness.open_gradients_tab(page, server)
    body = get_json(client, "/gradient_map", run=RUN, source="training")
    canvas, data = _map_canvas(frame)
    assert int(data["rows"]) == len(body["variables"])
    assert int(data["columns"]) == len(body["steps"])
    # every row drawn: each variable has at least one pixel row
    assert int(float(data["plotHeight"])) >= len(body["variables"])
    names = [v["name"] for v in body["variables"]]
    for name, column in ((f"block{DAMPED}_mlp_out/kernel", 1),
                         ("head/bias", len(body["steps"]) - 1)):
        row = names.index(name)
        canvas.scroll_into_view_if_needed()
        page.mouse.move(*_cell_point(canvas, data, row, column))
        tooltip = frame.locator(".tooltip")
        tooltip.wait_for(state="visible", timeout=TIMEOUT_MS)
        lines = tooltip.locator("div").all_text_contents()
        assert lines[0] == name
        assert lines[1] == f"{RUN}, step {body['steps'][column]}"
        assert lines[2].startswith("rms: ")
    # a click opens that variable's heatmap at that window, in the URL too
    row = names.index(f"block{DAMPED}_attn/query/kernel")
    canvas.scroll_into_view_if_needed()
    page.mouse.click(*_cell_point(canvas, data, row, 2))
    browser_harness.wait_rendered(frame, TIMEOUT_MS)
    frame.wait_for_function(
        """(name) => [...document.querySelectorAll('#view-heatmap .variable-name')]
             .some((node) => node.textContent === name)""",
        arg=f"block{DAMPED}_attn/query/kernel", timeout=TIMEOUT_MS)
    state = _url_state(page)
    assert state["view"] == ["heatmap"]
    assert state["variable"] == [f"block{DAMPED}_attn/query/kernel"]
    assert state["at"] == [str(body["steps"][2])]
    # a reload restores it
    page.reload()
    frame = browser_harness.gradients_frame(page, TIMEOUT_MS)
    browser_harness.wait_rendered(frame, TIMEOUT_MS)
    frame.wait_for_function(
        """(name) => [...document.querySelectorAll('#view-heatmap .variable-name')]
             .some((node) => node.textContent === name)""",
        arg=f"block{DAMPED}_attn/query/kernel", timeout=TIMEOUT_MS)
    assert problems == []


def test_depth_profiles_one_line_per_role(page, server):
    page, problems = page
    frame = browser_harness.open_gradients_tab(page, server)
    canvas = frame.locator(f"#view-flow canvas[data-run='{RUN}']")
    assert canvas.get_attribute("data-profiles") == str(PER_BLOCK)
    # the drag zoom of the map and its reset
    map_canvas, data = _map_canvas(frame)
    assert int(data["columns"]) == 6  # 18 steps in windows of 3
    start = _cell_point(map_canvas, data, 5, 1)
    end = _cell_point(map_canvas, data, 5, 3)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end)
    page.mouse.up()
    assert map_canvas.get_attribute("data-columns") == "3"
    assert map_canvas.get_attribute("data-zoomed") == "true"
    map_canvas.dblclick()
    assert map_canvas.get_attribute("data-zoomed") == "false"
    assert problems == []



def test_line_charts_draw_by_role_past_many_variables(page, server):
    page, problems = page
    frame = browser_harness.open_gradients_tab(page, server)
    outside = 6  # the two embeddings, the final norm's two, the head's two
    for view in ("layer-stats", "highest"):
        legend = frame.locator(f"#view-{view} .legend[data-legend=roles] "
                               ".legend-item")
        assert legend.count() == PER_BLOCK + outside, view
        assert "block#_attn/query/kernel" in legend.all_text_contents()
    # one variable per line, chosen in the toolbar, kept in the URL
    frame.select_option("[data-control=lines]", "variables")
    browser_harness.wait_rendered(frame, TIMEOUT_MS)
    frame.wait_for_function(
        "() => !document.querySelector('#view-layer-stats .legend[data-legend=roles]')",
        timeout=TIMEOUT_MS)
    items = frame.locator("#view-layer-stats .legend-item")
    assert items.count() == BLOCKS * PER_BLOCK + outside
    assert _url_state(page)["lines"] == ["variables"]
    page.reload()
    frame = browser_harness.gradients_frame(page, TIMEOUT_MS)
    browser_harness.wait_rendered(frame, TIMEOUT_MS)
    assert frame.locator("[data-control=lines]").input_value() == "variables"
    assert frame.locator(
        "#view-layer-stats .legend[data-legend=roles]").count() == 0
    assert problems == []


def test_the_role_legend_is_searched_and_picks_a_role(page, server):
    page, problems = page
    frame = browser_harness.open_gradients_tab(page, server)
    legend = frame.locator("#view-layer-stats .legend[data-legend=roles]")
    legend.locator("[data-control=legend-search]").fill("query")
    visible = legend.locator(".legend-item:not([hidden])")
    assert visible.all_text_contents() == ["block#_attn/query/kernel",
                                           "block#_attn/query/bias"]
    visible.first.click()
    # the filter keeps that role's variables: one per block, a line each
    frame.wait_for_function(
        "() => !document.querySelector('#view-layer-stats .legend[data-legend=roles]')",
        timeout=TIMEOUT_MS)
    browser_harness.wait_rendered(frame, TIMEOUT_MS)
    names = frame.locator("#view-layer-stats .legend-item").all_text_contents()
    assert names == [f"block{i}_attn/query/kernel" for i in range(BLOCKS)]
    assert _url_state(page)["filter"] == [r"^block\d+[a-z]?_attn/query/kernel$"]
    assert problems == []
