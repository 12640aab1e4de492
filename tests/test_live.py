"""A real TensorBoard shows windows while a real training process writes them.

One ``tensorboard`` process (each loader in turn: the Python one and the
Rust data server, ``--reload_interval=1``) reads a log directory while a
training process (tests.paced_training) records windows of 4 optimizer
steps: 2 epochs of 9 steps, so windows end at the global steps 4, 8, 12, 16
and, the last partial one, 18. The training process waits after each
window until the test has seen it served, so the test observes the count
growing one window at a time while the process is alive, then the final
total after it exits, from the same server.
"""

import time

import pytest

from tests import paced_training

WINDOW = 4
STEPS_PER_EPOCH = 9
EPOCHS = 2
ENDS = paced_training.window_ends(WINDOW, STEPS_PER_EPOCH, EPOCHS)
RUN = "live/train"
VARIABLES = ["hidden/kernel", "hidden/bias", "out/kernel", "out/bias"]
# statistics that every window of this run has (finite)
STATS = ["size", "steps", "norm", "l2", "l2_accumulated", "max_abs"]


def served_windows(get):
    """What the plugin serves of the run: (count in /runs, the window steps
    of /variable_stats, its body, the window steps of /steps), or None
    before the run is listed."""
    runs = get("/runs")
    if runs is None:
        return None
    counts = {info["run"]: info["epochs"] for info in runs["runs"]}
    if RUN not in counts:
        return None
    body = get("/variable_stats", run=RUN, source="training",
               stats=",".join(STATS))
    steps = get("/steps", run=RUN, source="training")
    if body is None or steps is None:
        return None
    return (counts[RUN], body["epochs"], body,
            [entry["epoch"] for entry in steps["epochs"]])


def loaded(body):
    """Whether every variable has a value at every window served (a loader
    adds an event's values one series at a time)."""
    return all(vector is not None for variable in body["variables"]
               for vector in variable["values"])


def wait_until_served(get, expected_steps, training):
    """Polls until the plugin serves exactly the windows `expected_steps`;
    returns the body of /variable_stats. Fails if it ever serves a window
    that was not written yet."""
    deadline = time.monotonic() + paced_training.WAIT_LIMIT_S
    last = None
    while time.monotonic() < deadline:
        served = served_windows(get)
        if served is not None:
            count, steps, body, step_rows = served
            last = (count, steps, step_rows)
            for listed in (steps, step_rows):
                assert listed == ENDS[:len(listed)], listed
                assert len(listed) <= len(expected_steps), (
                    f"served {listed} before the process wrote past "
                    f"{expected_steps}")
            if (count == len(expected_steps) and steps == expected_steps
                    and step_rows == expected_steps and loaded(body)):
                return body
        if training is not None:
            assert training.process.poll() is None, training.output()
        time.sleep(0.2)
    raise AssertionError(f"TensorBoard still serves {last!r}, expected the "
                         f"windows {expected_steps}")


def check_complete(body, steps):
    """Every variable has `STATS`, all finite, at every window served; the
    `steps` statistic counts the window's optimizer steps."""
    assert [v["name"] for v in body["variables"]] == VARIABLES
    lengths = [b - a for a, b in zip([0] + steps, steps)]
    assert body["stats"] == STATS
    steps_column = STATS.index("steps")
    for variable in body["variables"]:
        assert len(variable["values"]) == len(steps)
        for vector, length in zip(variable["values"], lengths):
            assert vector is not None, variable["name"]
            assert all(value is not None for value in vector), vector
            assert vector[steps_column] == length


@pytest.mark.parametrize("load_fast", [False, True],
                         ids=["load_fast=false", "load_fast=true"])
def test_windows_appear_while_training_runs(tmp_path, load_fast):
    logdir, control = tmp_path / "logs", tmp_path / "control"
    logdir.mkdir()
    control.mkdir()
    with paced_training.tensorboard(logdir, load_fast) as get, \
            paced_training.PacedTraining(
                logdir / "live", control, window=WINDOW,
                steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS,
                gate=True) as training:
        seen_while_training = []
        for k, end in enumerate(ENDS):
            assert int(training.wait_for(f"window-{k}")) == end
            body = wait_until_served(get, ENDS[:k + 1], training)
            check_complete(body, ENDS[:k + 1])
            # the process is waiting for us: it is still training
            assert training.process.poll() is None
            seen_while_training.append(len(body["epochs"]))
            training.release(k)
        training.finish()
        assert training.marker("done") == "done"
        assert seen_while_training == [1, 2, 3, 4, 5]
        # the same server, after the process has ended
        body = wait_until_served(get, ENDS, None)
        check_complete(body, ENDS)
        steps = get("/steps", run=RUN, source="training")
        assert [e["epoch"] for e in steps["epochs"]] == ENDS
        assert [len(e["l2"]) for e in steps["epochs"]] == [4, 4, 4, 4, 2]
        scalars = get("/scalars", run=RUN, source="training")
        assert scalars["epochs"] == ENDS
        assert scalars["series"]["steps"] == [4, 4, 4, 4, 2]
