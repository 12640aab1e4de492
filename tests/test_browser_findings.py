"""The Findings panel, the tab's URL state and chart downloads in headless
Chromium, served by a real TensorBoard.

Three real runs whose findings are known from their construction
(tests/test_findings.py): a layer whose weight gradient turns NaN at
optimizer step 10 (``nonfinite`` in ``bad/w``), a ReLU network whose
``hidden_2`` has 30 of 32 units switched off (``dead_units``) and a
He-initialised ReLU network (no findings).
"""

import csv
import io
import urllib.parse

import pytest

from tests import browser_harness as harness
from tests import test_findings

NAN_RUN = "nan/train"
DEAD_RUN = "dead/train"
CLEAN_RUN = "clean/train"
RUNS = {NAN_RUN: 3, DEAD_RUN: 4, CLEAN_RUN: 4}
SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}
TIMEOUT_MS = 60000


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("findings_logdir")
    test_findings._nan_run(root / "nan")
    test_findings._relu_net(root / "dead",
                            bias_initializer=test_findings._mostly_dead_bias)
    test_findings._relu_net(root / "clean")
    return root


@pytest.fixture(scope="module")
def server(logdir, chromium_path):
    with harness.tensorboard(logdir, expected_runs=RUNS) as base:
        yield base


@pytest.fixture(scope="module")
def tab(server, browser, tmp_path_factory):
    page = browser.new_page(viewport={"width": 1400, "height": 1000},
                            accept_downloads=True)
    problems = harness.page_problems(page)
    frame = harness.open_gradients_tab(page, server, TIMEOUT_MS)
    harness.select_runs(frame, list(RUNS), TIMEOUT_MS)
    yield page, problems
    page.close()


def route(server, name, **params):
    query = urllib.parse.urlencode(params)
    return harness.get_json(f"{server}{harness.PLUGIN_PREFIX}/{name}?{query}")


def frame_of(page):
    frame = harness.gradients_frame(page, TIMEOUT_MS)
    harness.wait_rendered(frame, TIMEOUT_MS)
    return frame


def listed(frame, run):
    return frame.evaluate(
        """(run) => [...document.querySelectorAll(
             `#view-findings .findings-run[data-run="${run}"] .finding-link`)]
             .map((button) => ({kind: button.dataset.kind, severity: button.dataset.severity,
                                variable: button.dataset.variable, view: button.dataset.view,
                                at: Number(button.dataset.at),
                                text: button.textContent}))""", run)


def url_state(page):
    """The tab's state as the TensorBoard page's URL holds it."""
    fragment = urllib.parse.urlsplit(page.url).fragment
    parts = dict(part.split("=", 1) for part in fragment.split("&")
                 if "=" in part)
    return urllib.parse.parse_qs(urllib.parse.unquote(parts["gradients"]))


def view_in_sight(frame, view):
    """Whether the view's section is scrolled to: its top in the upper half
    of the tab's window."""
    return frame.evaluate(
        """(view) => {
             const box = document.getElementById(`view-${view}`).getBoundingClientRect();
             return box.top >= -1 && box.top < innerHeight / 2 && scrollY > 0;
           }""", view)


def heatmap_state(frame):
    return frame.evaluate(
        """() => ({mode: document.querySelector('#heatmap-mode').value,
                  variable: document.querySelector('#heatmap-variable').value,
                  epoch: document.querySelector('[data-role=epoch-label]').textContent,
                  shown: [...document.querySelectorAll('#view-heatmap .variable-name')]
                    .map((node) => node.textContent)})""")


def open_finding(frame, run, kind):
    """Clicks a finding and waits until the tab has drawn what it opens."""
    frame.evaluate("() => { document.body.dataset.rendered = 'stale'; }")
    frame.locator(f"#view-findings .findings-run[data-run='{run}'] "
                  f".finding-link[data-kind='{kind}']").click()
    harness.wait_rendered(frame, TIMEOUT_MS)


def test_panel_lists_each_runs_findings_most_severe_first(tab, server):
    page, problems = tab
    frame = frame_of(page)
    served = {run: route(server, "findings", run=run)["findings"]
              for run in RUNS}
    # What the runs were built to show.
    assert (served[NAN_RUN][0]["kind"], served[NAN_RUN][0]["severity"],
            served[NAN_RUN][0]["variable"], served[NAN_RUN][0]["step"]) == (
        "nonfinite", "error", "bad/w", test_findings.NAN_STEP)
    assert [(f["kind"], f["layer"]) for f in served[DEAD_RUN]
            if f["severity"] != "info"] == [("dead_units", "hidden_2")]
    assert served[CLEAN_RUN] == []
    for run, found in served.items():
        shown = listed(frame, run)
        assert [(f["kind"], f["severity"], f["variable"] or "", f["view"], f["at"])
                for f in shown] == [
            (f["kind"], f["severity"], f["variable"] or "", f["view"], f["at"])
            for f in found]
        ranks = [SEVERITY_RANK[f["severity"]] for f in shown]
        assert ranks == sorted(ranks)
        for finding, served_finding in zip(shown, found):
            assert served_finding["message"] in finding["text"]
    nonfinite = listed(frame, NAN_RUN)[0]["text"]
    assert "epoch 1, step 10" in nonfinite and "bad/w" in nonfinite
    clean = frame.locator(f"#view-findings .findings-run[data-run='{CLEAN_RUN}']")
    assert clean.locator(".notice").text_content() == "No findings"
    assert problems == []


def test_a_nonfinite_finding_opens_the_layer_statistics_of_its_variable(tab, server):
    page, problems = tab
    frame = frame_of(page)
    open_finding(frame, NAN_RUN, "nonfinite")
    assert frame.locator("#variable-filter").input_value() == "^bad/w$"
    assert view_in_sight(frame, "layer-stats")
    legend = frame.locator("#view-layer-stats .legend-item").all_text_contents()
    assert legend == ["bad/w"]
    # The flow view's slider is at the finding's epoch.
    assert frame.locator("[data-role=flow-epoch-label]").text_content() == "1 / 3"
    state = url_state(page)
    assert state["view"] == ["layer-stats"] and state["at"] == ["1"]
    assert state["filter"] == ["^bad/w$"] and state["variable"] == ["bad/w"]
    assert frame.locator(
        f".findings-run[data-run='{NAN_RUN}'] .finding-link").get_attribute(
        "aria-current") == "true"
    assert problems == []


def test_a_dead_units_finding_opens_its_heatmap_and_a_reload_restores_it(tab, server):
    page, problems = tab
    frame = frame_of(page)
    finding = [f for f in route(server, "findings", run=DEAD_RUN)["findings"]
               if f["kind"] == "dead_units"][0]
    assert finding["view"] == "heatmap"
    open_finding(frame, DEAD_RUN, "dead_units")
    last = RUNS[DEAD_RUN] - 1
    expected = {"mode": "one", "variable": finding["variable"],
                "epoch": f"{finding['at']} / {last}"}
    state = heatmap_state(frame)
    assert {key: state[key] for key in expected} == expected
    assert set(state["shown"]) == {finding["variable"]}
    assert view_in_sight(frame, "heatmap")
    assert frame.locator("#variable-filter").input_value() == ""
    before = url_state(page)
    assert before["run"] == sorted(RUNS) and before["view"] == ["heatmap"]

    page.reload()
    frame = frame_of(page)
    assert url_state(page) == before
    state = heatmap_state(frame)
    assert {key: state[key] for key in expected} == expected
    assert view_in_sight(frame, "heatmap")
    checked = frame.evaluate(
        """() => [...document.querySelectorAll('#run-picker input:checked')]
             .map((box) => box.value)""")
    assert sorted(checked) == sorted(RUNS)

    # Moving the slider is remembered too.
    slider = frame.locator("#epoch-slider")
    slider.focus()
    slider.press("End")
    frame.wait_for_function(
        "(text) => document.querySelector('[data-role=epoch-label]').textContent === text",
        arg=f"{last} / {last}", timeout=TIMEOUT_MS)
    assert "at" not in url_state(page)
    slider.press("ArrowLeft")
    frame.wait_for_function(
        "(text) => document.querySelector('[data-role=epoch-label]').textContent === text",
        arg=f"{last - 1} / {last}", timeout=TIMEOUT_MS)
    assert url_state(page)["at"] == [str(last - 1)]
    assert problems == []


def download(page, frame, selector, tmp_path):
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        frame.locator(selector).click()
    target = tmp_path / info.value.suggested_filename
    info.value.save_as(target)
    return target


def test_charts_download_as_png_and_csv(tab, server, tmp_path):
    page, problems = tab
    frame = frame_of(page)
    canvas = f"canvas[data-view='norms'][data-run='{NAN_RUN}']"
    frame.locator(canvas).scroll_into_view_if_needed()
    frame.locator(canvas).hover()
    png = download(page, frame, f".chart-frame:has({canvas}) [data-download=png]", tmp_path)
    assert png.suffix == ".png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 1000

    target = download(page, frame, f".chart-frame:has({canvas}) [data-download=csv]", tmp_path)
    assert target.suffix == ".csv"
    raw = target.read_bytes()
    assert b"\r\n" in raw
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    scalars = route(server, "scalars", run=NAN_RUN, source="training")
    assert rows[0] == ["epoch", "norm", "norm_accumulated", "accumulated_norm"]
    assert [int(row[0]) for row in rows[1:]] == scalars["epochs"]
    for column, stat in enumerate(rows[0][1:], start=1):
        expected = scalars["series"][stat]
        got = [float(row[column]) if row[column] else None for row in rows[1:]]
        assert got == expected, stat

    # The layer statistics name each variable in the header.
    assert frame.locator("#variable-filter").input_value() == ""
    canvas = f"canvas[data-view='layer-stats'][data-run='{DEAD_RUN}'][data-stat='max_abs']"
    frame.locator(canvas).scroll_into_view_if_needed()
    target = download(page, frame, f".chart-frame:has({canvas}) [data-download=csv]", tmp_path)
    rows = list(csv.reader(io.StringIO(target.read_text("utf-8"), newline="")))
    stats = route(server, "variable_stats", run=DEAD_RUN, source="training",
                  stats="max_abs")
    assert rows[0] == ["epoch"] + [v["name"] for v in stats["variables"]]
    for index, variable in enumerate(stats["variables"], start=1):
        assert [float(row[index]) for row in rows[1:]] == [
            vector[0] for vector in variable["values"]]
    assert problems == []


CSV_CASES = [
    # (field, CSV text): RFC 4180 quoting, and no formula in a spreadsheet.
    ("dense/kernel", "dense/kernel"),
    ('a,"b"', '"a,""b"""'),
    ("two\nlines", '"two\nlines"'),
    ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
    ("+cmd", "'+cmd"),
    ("-2+3", "'-2+3"),
    ("@sum", "'@sum"),
    ("-1.5e-3", "-1.5e-3"),
    (-0.25, "-0.25"),
    (None, ""),
]


def test_csv_fields_are_quoted_and_never_formulas(tab):
    page, problems = tab
    frame = frame_of(page)
    fields = frame.evaluate(
        """async (values) => {
             const {csvField, toCsv} = await import(new URL('lib/download.js', document.baseURI).href);
             return {fields: values.map(csvField), table: toCsv([['x', '=a'], [1, null]])};
           }""", [value for value, _ in CSV_CASES])
    assert fields["fields"] == [text for _, text in CSV_CASES]
    assert fields["table"] == "x,'=a\r\n1,\r\n"
    assert problems == []
