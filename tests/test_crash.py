"""A training process killed with SIGKILL leaves readable, complete windows.

Training processes (tests.paced_training) record windows of 4 optimizer
steps over 3 epochs of 9 steps (windows end at the global steps 4, 8, ...,
24 and 27) and are killed with SIGKILL, as an out-of-memory killer or a
preempted job would end them:

* ``window_end``: right after window 2 (step 12) was written and flushed;
* ``mid_window``: two steps into window 3 (at step 14);
* ``free``: while training on freely (a short sleep per batch), as soon as
  it reports window 1, wherever it is then: between two steps, inside a
  window's end, or writing it.

A fourth process, ``complete``, trains the same model to the end. Then
TensorBoard's own readers read every event file without error, every window
that had ended before the kill is there with every series of the
uninterrupted run's window (the same values), no later one is, and a real
``tensorboard`` process, with each loader, serves every route of every run.
"""

import os

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_file_loader

from tb_gradients.format import metadata
from tb_gradients.format import scalars

from tests import eventfiles
from tests import paced_training

WINDOW = 4
STEPS_PER_EPOCH = 9
EPOCHS = 3
ENDS = paced_training.window_ends(WINDOW, STEPS_PER_EPOCH, EPOCHS)
VARIABLES = ["hidden/kernel", "hidden/bias", "out/kernel", "out/bias"]
CASES = {
    "window_end": {"hold_at": 12},
    "mid_window": {"hold_at": 14},
    # the hold only makes sure the process is still in `fit` when killed
    "free": {"batch_sleep": 0.01, "hold_at": ENDS[-1] - 1},
    "complete": {},
}


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """Runs the four processes at once; returns the log directory and, per
    run, the windows it reported before it ended and its exit status."""
    root = tmp_path_factory.mktemp("crash")
    trainings = {}
    try:
        for name, options in CASES.items():
            control = root / "control" / name
            control.mkdir(parents=True)
            trainings[name] = paced_training.PacedTraining(
                root / "logs" / name, control, window=WINDOW,
                steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS, **options)
        for name, training in trainings.items():
            if name == "complete":
                training.finish()
                continue
            training.wait_for("window-1" if name == "free" else "held")
            training.kill()
        return root / "logs", {
            name: {"reported": training.windows_reported(),
                   "returncode": training.process.returncode}
            for name, training in trainings.items()}
    finally:
        for training in trainings.values():
            training.stop()


@pytest.fixture(scope="module")
def runs(logdir):
    logs, status = logdir
    return {name: dict(status[name], series=eventfiles.load(
        logs / name / "train")) for name in CASES}


def written_windows(series):
    """The steps of the windows in a run's event files."""
    return sorted(series[metadata.variable_stats_tag("training",
                                                     VARIABLES[0])])


def window_series(series, step):
    """Every series of one window: tag -> value at `step` (missing tags
    absent)."""
    tags = [metadata.steps_tag("training")]
    tags += [metadata.scalar_tag("training", name)
             for name in scalars.GLOBAL_STAT_NAMES]
    for variable in VARIABLES:
        tags += [metadata.variable_stats_tag("training", variable),
                 metadata.heatmap_tag("training", variable),
                 metadata.histogram_tag("training", variable)]
    return {tag: series[tag][step] for tag in tags
            if step in series.get(tag, {})}


def test_the_processes_were_killed(runs):
    assert runs["complete"]["returncode"] == 0
    for name in ("window_end", "mid_window", "free"):
        assert runs[name]["returncode"] == -9, name


@pytest.mark.parametrize("name", list(CASES))
def test_event_files_read_without_error(logdir, name):
    run_dir = logdir[0] / name / "train"
    files = sorted(os.listdir(run_dir))
    assert files
    for file_name in files:
        path = str(run_dir / file_name)
        events = list(event_file_loader.EventFileLoader(path).Load())
        raw = list(event_file_loader.RawEventFileLoader(path).Load())
        assert len(raw) == len(events) > 1
        assert events[0].file_version == "brain.Event:2"


def test_windows_ended_before_the_kill_are_there(runs):
    assert written_windows(runs["complete"]["series"]) == ENDS
    assert runs["complete"]["reported"] == ENDS
    assert runs["window_end"]["reported"] == [4, 8, 12]
    assert written_windows(runs["window_end"]["series"]) == [4, 8, 12]
    assert runs["mid_window"]["reported"] == [4, 8, 12]
    assert written_windows(runs["mid_window"]["series"]) == [4, 8, 12]
    reported = runs["free"]["reported"]
    written = written_windows(runs["free"]["series"])
    assert reported == ENDS[:len(reported)] and len(reported) >= 2
    # a window is reported after its flush: the kill may fall in between
    assert written in (reported, ENDS[:len(reported) + 1])


@pytest.mark.parametrize("name", ["window_end", "mid_window", "free"])
def test_every_window_is_complete(runs, name):
    expected = runs["complete"]["series"]
    series = runs[name]["series"]
    for step in written_windows(series):
        got, want = window_series(series, step), window_series(expected,
                                                               step)
        assert len(want) == 1 + len(scalars.GLOBAL_STAT_NAMES) + 3 * len(
            VARIABLES)
        assert sorted(got) == sorted(want), (name, step)
        for tag, value in want.items():
            np.testing.assert_allclose(got[tag], value, rtol=1e-6,
                                       err_msg=f"{name} {tag} {step}")
        assert eventfiles.scalar(series, "training", "steps", step) == (
            step - max([0] + [s for s in ENDS if s < step]))


@pytest.mark.parametrize("load_fast", [False, True],
                         ids=["load_fast=false", "load_fast=true"])
def test_tensorboard_serves_the_killed_runs(runs, logdir, load_fast):
    expected = {f"{name}/train": written_windows(runs[name]["series"])
                for name in CASES}
    with paced_training.tensorboard(logdir[0], load_fast) as get:
        listing = paced_training.wait(
            lambda: _listing_if_loaded(get, expected),
            "TensorBoard to load the runs")
        assert sorted(info["run"] for info in listing) == sorted(expected)
        for run, steps in expected.items():
            check = dict(run=run, source="training", missing_ok=False)
            assert [v["name"] for v in
                    get("/variables", **check)["variables"]] == VARIABLES
            assert get("/variable_stats", **check)["epochs"] == steps
            assert get("/scalars", **check)["epochs"] == steps
            assert [e["epoch"] for e in
                    get("/steps", **check)["epochs"]] == steps
            for variable in VARIABLES:
                heatmap = get("/heatmap", variable=variable, **check)
                assert heatmap["epoch"] == steps[-1]
                assert get("/heatmap", variable=variable, epoch=steps[0],
                           **check)["epoch"] == steps[0]
            assert get("/timestep_layers", run=run,
                       missing_ok=False)["layers"] == []


def _listing_if_loaded(get, expected):
    """The run listing once every run serves all its windows, else None."""
    listing = get("/runs")
    if listing is None:
        return None
    counts = {info["run"]: info["epochs"] for info in listing["runs"]}
    if any(counts.get(run) != len(steps) for run, steps in expected.items()):
        return None
    for run, steps in expected.items():
        body = get("/variable_stats", run=run, source="training")
        rows = get("/steps", run=run, source="training")
        # a loader adds an event's values one series at a time: the
        # per-step rows are the last series of a window's event
        if (body is None or body["epochs"] != steps or rows is None
                or [entry["epoch"] for entry in rows["epochs"]] != steps):
            return None
    return listing["runs"]
