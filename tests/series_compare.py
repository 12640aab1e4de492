"""Compares two recordings of the same training (another backend, another
device layout) figure by figure, within float32 round-off.

Two runs of the same maths differ only in the order of float32 sums (XLA
and TensorFlow reduce in different orders; an all-reduce over devices adds
in yet another): a few units of 2**-24, carried through the few steps of
training that follow. A figure's round-off is relative to the terms it was
summed from, not to its own value: a gradient that nearly cancels (a
converged bias) keeps the round-off of its terms (`run_scale`), and a
figure that is a difference of larger ones is compared against those
(`cancellation_scales`).
"""

import numpy as np


from tb_gradients.format import variable_stats
# about 170 units of float32's 2**-24
RTOL = 1e-5
# Counts, indices and fractions of counts: equal, or a real difference.
# (`max_abs_index` only where no two elements tie: with a 2-class softmax
# the output layer's gradient is (a, -a) per row and round-off picks the
# index of the tie.)
EXACT_STATS = ("size", "steps", "nan_count", "inf_count", "max_abs_index",
               "dead_units", "first_nonfinite_step")
EXACT_SCALARS = ("nan_count", "inf_count", "steps", "skipped_steps")


def finite(values):
    return np.nan_to_num(np.abs(np.asarray(values, np.float64)), nan=0.0,
                         posinf=0.0, neginf=0.0)


def run_scale(values):
    """The largest value of a figure over the run's windows (per variable).

    A window's gradient is a sum of terms (samples, steps) as large as the
    variable's gradients elsewhere in the run, and its round-off is relative
    to those terms: a gradient that nearly cancels keeps the round-off of
    its terms, not of its small sum.
    """
    return finite(values).max(axis=0, keepdims=True)


def cancellation_scales(get):
    """For each figure that is a difference of larger figures, the larger
    figure (its round-off is relative to that, not to the difference);
    ``get(name)`` gives a per-variable statistic or a global scalar."""
    steps = get("steps")
    with np.errstate(all="ignore"):
        return {
            # ΣG/size: elements of both signs cancel, their |G| does not
            "mean": get("mean_abs"),
            # std² = ‖G‖₂²/size − mean²
            "std": np.sqrt(get("mean") ** 2 + get("std") ** 2),
            # C = Σ_k G_k cancels over the windows: its elements' round-off
            # is relative to A = Σ_k |G_k|, with ‖A‖₁/size = accumulated_norm,
            # ‖A‖₂ ≤ Σ_k l2_k and max A ≤ Σ_k max_abs_k; D = A − |C|
            "norm_accumulated": get("accumulated_norm"),
            "dissolving_norm": get("accumulated_norm"),
            "l2_accumulated": np.cumsum(finite(get("l2")), axis=0),
            "accumulated_max_abs": np.cumsum(finite(get("max_abs")), axis=0),
            "dissolving_max": np.cumsum(finite(get("max_abs")), axis=0),
            # (Σ_i ‖g_i‖₁ − ‖G‖₁)/size, relative to Σ_i ‖g_i‖₁/size
            "within_epoch_dissolving_norm": (
                get("within_epoch_dissolving_norm") + get("norm")),
            # trace/signal with trace ∝ S/n − ‖m‖²: relative to
            # (S/n)/‖m‖² = noise_scale·(n − 1)/n + 1
            "noise_scale": get("noise_scale") * (steps - 1) / steps + 1,
        }


# Values that no tolerance covers: each must be where the reference has it.
NONFINITE = (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf))


def assert_nonfinite_alike(got, want, what):
    """NaN only where ``want`` is NaN, +inf only where it is +inf, -inf only
    where it is -inf."""
    for label, where in NONFINITE:
        np.testing.assert_array_equal(where(got), where(want),
                                      err_msg=f"{what}: {label} positions")


def assert_close(got, want, rtol, atol, what):
    """``|got − want| ≤ rtol·|want| + atol`` where ``want`` is finite; NaN,
    +inf and -inf exactly where ``want`` has them (no tolerance covers a
    non-finite value: ``inf − inf`` is NaN, and ``rtol·inf`` is inf)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, what
    assert_nonfinite_alike(got, want, what)
    with np.errstate(invalid="ignore", over="ignore"):
        bad = np.abs(got - want) > rtol * np.abs(want) + finite(atol)
    # (both non-finite, and alike, at the other positions)
    bad &= np.isfinite(want)
    assert not bad.any(), (
        f"{what} at {np.argwhere(bad).tolist()}: got {got[bad]}, "
        f"expected {want[bad]}")


def assert_exact(got, want, what):
    """Equal values, NaN and ±inf at the same positions."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, what
    assert_nonfinite_alike(got, want, what)
    np.testing.assert_array_equal(got, want, err_msg=what)


def assert_same_statistics(got, want, rtol=RTOL, what=""):
    """Every per-variable statistic of two `series.SourceSeries`."""
    assert [v["name"] for v in got.variables] == [
        v["name"] for v in want.variables], what
    np.testing.assert_array_equal(got.steps, want.steps, err_msg=what)
    scales = cancellation_scales(want.stat)
    for name in variable_stats.VARIABLE_STAT_NAMES:
        label = f"{what} {name}"
        if name in EXACT_STATS:
            assert_exact(got.stat(name), want.stat(name), label)
            continue
        scale = np.maximum(run_scale(want.stat(name)),
                           finite(scales.get(name, 0.0)))
        assert_close(got.stat(name), want.stat(name), rtol, rtol * scale,
                     label)


def assert_same_scalars(got, want, rtol=RTOL, what=""):
    """Every whole-model scalar of two `series.SourceSeries`."""
    assert sorted(got.scalars) == sorted(want.scalars), what
    scales = cancellation_scales(want.scalar)
    for name, values in want.scalars.items():
        label = f"{what} {name}"
        if name in EXACT_SCALARS:
            assert_exact(got.scalars[name], values, label)
            continue
        scale = np.maximum(run_scale(values)[0], finite(scales.get(name, 0.0)))
        assert_close(got.scalars[name], values, rtol, rtol * scale, label)


def assert_same_step_tables(got, want, rtol=RTOL, what=""):
    """The per-step tables (training source) of two `SourceSeries`."""
    assert sorted(got.step_tables) == sorted(want.step_tables), what
    if not want.step_tables:
        return
    scale = run_scale(np.concatenate(list(want.step_tables.values())))
    for step, table in want.step_tables.items():
        assert_close(got.step_tables[step], table, rtol, rtol * scale,
                     f"{what} per-step table at {step}")


def assert_same_recording(actual_runs, expected_runs, rtol=RTOL):
    """Every source of every run of ``expected_runs`` (`reader.load_runs`)
    is recorded equally in ``actual_runs``."""
    assert sorted(actual_runs) == sorted(expected_runs)
    for run, expected in expected_runs.items():
        actual = actual_runs[run]
        assert sorted(actual.sources) == sorted(expected.sources)
        for source, want in expected.sources.items():
            got = actual.sources[source]
            what = f"{run} {source}"
            assert_same_statistics(got, want, rtol, what)
            assert_same_scalars(got, want, rtol, what)
            assert_same_step_tables(got, want, rtol, what)
