"""Damaged, partial and foreign logdirs: one bad run never hides the
others, and every unreadable thing is named.

One real run (an LSTM model trained with probe data, so every summary kind
is written) and copies of it rewritten the ways real logdirs get damaged
(`tests.damaged_logdirs`): a value of the wrong shape or dtype, bytes that
do not fill their shape, metadata that is not JSON, of an unknown kind or
from a newer format version, an event file cut in a record, an empty event
file. Read by the reader and by ``diagnose``, served by a real
``tensorboard`` on both loaders and opened in headless Chromium.
"""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

from tb_gradients.analysis import findings
from tb_gradients.analysis import reader
from tb_gradients.format import metadata
from tb_gradients.plugin import reading as plugin_reading
from tb_gradients.plugin import routes as plugin_routes

from tests import browser_harness
from tests import damaged_logdirs
from tests import logdirs

PREFIX = browser_harness.PLUGIN_PREFIX
INTACT = "intact/train"
# Runs that TensorBoard's own listing shows with read errors: their
# metadata cannot be read (the other damages are in values, or in files
# TensorBoard reads past without a word).
FOREIGN = ("newer_version/train", "not_json/train", "unknown_kind/train")


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """``(logdir, {run: [(tag or event file, step)] damaged})``."""
    intact = tmp_path_factory.mktemp("intact") / "lstm"
    logdirs.train_recurrent_run(str(intact), encoder="LSTM", epochs=2)
    root = tmp_path_factory.mktemp("damaged")
    return root, damaged_logdirs.damaged_logdir(str(intact), str(root))


def _named(errors, tag, step):
    """Whether one of ``errors`` (ReadErrors or their JSON) names ``tag``
    (or an event file, in its reason) at ``step``."""
    for error in errors:
        if isinstance(error, dict):
            error_tag, error_step, reason = (error["tag"], error["step"],
                                             error["reason"])
        else:
            error_tag, error_step, reason = error.tag, error.step, error.reason
        if tag.startswith("events.out"):
            if tag in reason and error_tag is None:
                return True
        elif error_tag == tag and error_step == step:
            return True
    return False


def test_the_reader_keeps_every_run_and_names_every_damage(damaged):
    root, where = damaged
    runs = reader.load_runs(str(root))
    assert sorted(runs) == sorted([INTACT] + list(where))
    intact = runs[INTACT]
    assert intact.errors == [] and sorted(intact.sources) == ["probe",
                                                              "training"]
    for name, places in where.items():
        run = runs[name]
        for tag, step in places:
            assert _named(run.errors, tag, step), (name, tag, step,
                                                   [str(e) for e in run.errors])
        for error in run.errors:
            assert error.run == name and str(error).startswith(
                f"run {name!r}"), str(error)
            assert "reshape" not in error.reason or "cannot be decoded" in \
                error.reason, str(error)
    # what a damage leaves readable equals the intact run
    damaged_run = runs["wrong_shape/train"].sources["training"]
    training = intact.sources["training"]
    [(stats_tag, step)] = [p for p in where["wrong_shape/train"]
                           if "/variable/" in p[0]]
    name = stats_tag.rsplit("/variable/", 1)[1]
    row = list(training.steps).index(step)
    column = [v["name"] for v in training.variables].index(name)
    assert np.isnan(damaged_run.stats[row, column]).all()
    kept = np.ones(training.stats.shape, bool)
    kept[row, column] = False
    np.testing.assert_array_equal(damaged_run.stats[kept],
                                  training.stats[kept])
    newer = runs["newer_version/train"]
    assert newer.sources == {}
    assert newer.errors[0].reason == (
        f"written by format version {metadata.FORMAT_VERSION + 1}; this "
        f"version reads up to {metadata.FORMAT_VERSION}: upgrade "
        "tb-gradients")
    cut = runs["cut/train"].sources["training"]
    assert list(cut.steps) == list(training.steps[:1])
    np.testing.assert_array_equal(cut.stats[0], training.stats[0])


def _diagnose(root, *flags):
    return subprocess.run(
        [sys.executable, "-m", "tb_gradients.diagnose", str(root), *flags],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def test_diagnose_goes_on_past_damaged_runs(damaged):
    root, where = damaged
    result = _diagnose(root, "--json")
    assert result.returncode == 3, result.stderr[-2000:]
    body = json.loads(result.stdout, parse_constant=pytest.fail)
    runs = {entry["run"]: entry for entry in body["runs"]}
    assert sorted(runs) == sorted([INTACT] + list(where))
    assert runs[INTACT]["errors"] == []
    expected = [f.to_json() for f in findings.evaluate(
        reader.load_run(str(root / "intact" / "train")).sources)]
    assert runs[INTACT]["findings"] == expected
    for name, places in where.items():
        if name == "newer_version/train":
            continue  # one error for every series: below
        for tag, step in places:
            assert _named(runs[name]["errors"], tag, step), (name, tag)
    [newer] = runs["newer_version/train"]["errors"]
    assert newer["more"] == len(where["newer_version/train"]) - 1
    assert "upgrade tb-gradients" in newer["message"]
    text = _diagnose(root)
    assert text.returncode == 3 and "read with errors" in text.stdout
    assert "wrong_shape/train" in text.stdout


def _ask(base, route, **params):
    """``(status, body)``: parsed strict JSON for 200, the text else."""
    url = f"{base}{PREFIX}{route}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, json.loads(
                response.read().decode("utf-8"), parse_constant=pytest.fail)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", errors="replace")


def _sweep(base, variables=3):
    """Every route of every run, its sources and layers, and the heatmap
    routes of its first ``variables`` variables per source (the damaged
    heatmap is the first): ``(runs, {(route, run): [statuses]})``."""
    answers = {}

    def ask(route, run, **params):
        status, body = _ask(base, route, run=run, **params)
        answers.setdefault((route, run), []).append(status)
        assert status in (200, 400, 404), (route, run, params, body)
        if status != 200:
            assert body.strip(), (route, run, params)
        return status, body

    _, listing = _ask(base, "/runs")
    for info in listing["runs"]:
        run = info["run"]
        ask("/findings", run)
        for source in metadata.SOURCES:
            for route in ("/scalars", "/variable_stats", "/steps"):
                ask(route, run, source=source)
            status, body = ask("/variables", run, source=source)
            for variable in (body["variables"][:variables]
                             if status == 200 else []):
                ask("/heatmap", run, source=source, variable=variable["name"])
                ask("/gate_heatmap", run, source=source,
                    variable=variable["name"])
        status, body = ask("/timestep_layers", run)
        for layer in (body["layers"] if status == 200 else []):
            ask("/timesteps", run, layer=layer["layer"])
            for source in metadata.SOURCES:
                ask("/gates", run, source=source, layer=layer["layer"])
    return listing["runs"], answers


def _log_lines(log_path, text):
    with open(log_path, encoding="utf-8", errors="replace") as log:
        return [line for line in log if text in line]


@pytest.mark.parametrize("load_fast", [False, True],
                         ids=["load_fast=false", "load_fast=true"])
def test_served_and_shown_on_both_loaders(damaged, load_fast):
    root, where = damaged
    marker = plugin_reading.READ_ERROR_WARNING.split("%", 1)[0]
    guard = plugin_routes.GUARD_WARNING.split("%", 1)[0]
    with browser_harness.tensorboard_with_log(
            root, load_fast, {INTACT: 2}) as (base, log_path):
        browser_harness.wait_for_settled_runs(base)
        runs, answers = _sweep(base)
        listed = {info["run"]: info for info in runs}
        for name in FOREIGN:
            assert listed[name]["errors"], name
        assert listed["newer_version/train"]["sources"] == []
        assert listed[INTACT]["errors"] == []
        assert answers[("/findings", INTACT)] == [200]
        # runs whose statistics, per-step table or metadata are damaged
        # say so in their findings; the intact run's are as read alone
        for name in FOREIGN + ("wrong_shape/train", "garbled_bytes/train"):
            status, body = _ask(base, "/findings", run=name)
            assert status == 200 and body["errors"], (name, body)
            if name != "newer_version/train":
                assert any(_named(body["errors"], tag, step)
                           or _named(body["errors"], tag, None)
                           for tag, step in where[name]), (name, body)
        status, body = _ask(base, "/findings", run=INTACT)
        assert status == 200 and body["errors"] == []
        logged = _log_lines(log_path, marker)
        assert not _log_lines(log_path, guard), "the guard answered"
        _sweep(base, variables=1)  # asked again: logged once, not per request
        assert _log_lines(log_path, marker) == logged
        # at most one line per damage (a newer version: one for the run)
        bound = sum(1 if name == "newer_version/train" else len(places)
                    for name, places in where.items())
        assert 0 < len(logged) <= bound, logged
        assert len(set(logged)) == len(logged), logged
        if not load_fast:  # the page reads the same answers on both
            _check_the_tab(base, where, listed)


def _check_the_tab(base, where, listed):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = browser_harness.launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            problems = browser_harness.page_problems(page)
            frame = browser_harness.open_gradients_tab(page, base)
            frame.click("[data-control=select-all-runs]")
            frame.wait_for_function(
                """(count) => document.body.dataset.rendered === 'true' &&
                   document.querySelectorAll('.findings-run').length === count
                   && ![...document.querySelectorAll('.findings-content')]
                     .some((content) => content.textContent === 'Loading…')""",
                arg=len(listed), timeout=120000)
            frame.wait_for_function(
                "() => document.body.dataset.rendered === 'true'",
                timeout=120000)
            for name in FOREIGN + ("wrong_shape/train",):
                block = frame.locator(f".findings-run[data-run='{name}']")
                assert block.locator(".read-error").count() >= 1, name
            newer = frame.locator(
                ".findings-run[data-run='newer_version/train'] .read-error")
            assert "upgrade tb-gradients" in newer.first.text_content()
            badge = frame.locator(
                "#run-picker [data-run='newer_version/train'] "
                "[data-badge=read-errors]")
            assert badge.text_content() == "unreadable"
            assert frame.locator("#view-norms canvas").count() >= 1
            intact = frame.locator(f".findings-run[data-run='{INTACT}']")
            assert intact.locator(".read-error").count() == 0
            assert "Nothing of this run can be read" in frame.locator(
                "#view-flow .panel[data-run='newer_version/train']"
            ).text_content()
            uncaught = [p for p in problems if "Failed to load resource"
                        not in p]
            assert not uncaught, uncaught
        finally:
            browser.close()
