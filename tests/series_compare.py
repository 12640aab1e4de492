"""Compares two recordings of the same training (another backend, another
device layout) statistic by statistic, within float32 round-off.

Two runs of the same maths differ only in the order of float32 sums (XLA
and TensorFlow reduce in different orders; an all-reduce over devices adds
in yet another). Each statistic is compared against the scale of what it
was computed from, not its own value: ``mean`` is a sum that cancels, so
its error is bounded by ``mean_abs`` (the same sum of magnitudes) times
float32's relative precision, however small the mean itself; the
dissolving figures are differences of two accumulated quantities, so their
error scales with ``accumulated_norm`` / ``accumulated_max_abs``.
"""

import numpy as np

from tb_gradients import metadata

# float32 round-off of sums of a few hundred terms, in another order
RTOL = 1e-5
# counts and indices: the same in any order of summation
EXACT = ("size", "steps", "nan_count", "inf_count", "max_abs_index",
         "dead_units", "first_nonfinite_step")
# statistic -> the statistic bounding its round-off (cancelling sums)
SCALE_OF = {
    "mean": "mean_abs",
    "std": "l2",
    "dissolving_norm": "accumulated_norm",
    "within_epoch_dissolving_norm": "accumulated_norm",
    "dissolving_max": "accumulated_max_abs",
    "noise_scale": "accumulated_norm",
}

# the same for the whole-model scalars
GLOBAL_SCALE_OF = {
    "dissolving_norm": "accumulated_norm",
    "within_epoch_dissolving_norm": "norm",
    "noise_scale": "accumulated_norm",
}


def _column(series, name):
    return series.stat(name)


def statistic_mismatches(actual, expected):
    """Names and worst relative errors of the statistics that differ."""
    problems = []
    if list(actual.steps) != list(expected.steps):
        return [f"steps {list(actual.steps)} != {list(expected.steps)}"]
    if [v["name"] for v in actual.variables] != [
            v["name"] for v in expected.variables]:
        return ["variables differ"]
    for name in metadata.VARIABLE_STAT_NAMES:
        got, want = _column(actual, name), _column(expected, name)
        both_nan = np.isnan(got) & np.isnan(want)
        if name in EXACT:
            bad = ~(both_nan | (got == want))
        else:
            scale = np.abs(want)
            if name in SCALE_OF:
                scale = np.maximum(scale, np.abs(_column(expected,
                                                         SCALE_OF[name])))
            bad = ~(both_nan | (np.abs(got - want) <= RTOL * scale)
                    | (got == want))
        if bad.any():
            where = np.argwhere(bad)[0]
            problems.append(
                f"{name} at window {where[0]}, variable {where[1]}: "
                f"{got[tuple(where)]!r} != {want[tuple(where)]!r}")
    for name, values in expected.scalars.items():
        got = actual.scalars.get(name)
        scale = np.abs(values)
        if name in GLOBAL_SCALE_OF:
            scale = np.maximum(scale, np.abs(expected.scalars[
                GLOBAL_SCALE_OF[name]]))
        if got is None or got.shape != values.shape or not np.all(
                (np.abs(got - values) <= RTOL * scale)
                | (np.isnan(got) & np.isnan(values))):
            problems.append(f"global {name}: {got!r} != {values!r}")
    for step, table in expected.step_tables.items():
        got = actual.step_tables.get(step)
        if got is None or got.shape != table.shape or not np.allclose(
                got, table, rtol=RTOL, atol=0):
            problems.append(f"per-step table at {step}: {got!r} != {table!r}")
    return problems


def assert_same_recording(actual_runs, expected_runs):
    """Every source of every run of ``expected_runs`` (`reader.load_runs`)
    is recorded equally in ``actual_runs``."""
    assert sorted(actual_runs) == sorted(expected_runs)
    for run, expected in expected_runs.items():
        actual = actual_runs[run]
        assert sorted(actual.sources) == sorted(expected.sources)
        for source, series in expected.sources.items():
            problems = statistic_mismatches(actual.sources[source], series)
            assert not problems, f"{run} {source}: " + "; ".join(problems)
