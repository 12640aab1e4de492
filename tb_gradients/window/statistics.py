"""The statistics of docs/STATISTICS.md from a window's reductions, as pure
numpy functions.

The window-end kernel reduces each variable on the device
(`window.kernels`); what is left here turns those small results into the
per-variable and whole-model statistics, on the host in float64. Nothing
here knows about TensorFlow, Keras or TensorBoard.

Notation (per trainable variable, epoch ``e``):

* ``G_e``  the epoch gradient (training source: sum of the per-step gradients
  the optimizer applied during the epoch; probe source: the gradient of the
  probe loss at the epoch's end),
* ``C_e = sum_{k<=e} G_k``        the accumulated gradient,
* ``A_e = sum_{k<=e} |G_k|``      the accumulated absolute gradient,
* ``D_e = A_e - |C_e|``           the (elementwise) dissolving gradient.
"""

import functools
import math

import numpy as np


from tb_gradients.format import scalars
from tb_gradients.format import variable_stats
# Per-variable reductions the device returns at a window's end
# (`window.kernels`), in order; `variable_columns` turns them into the
# statistics of docs/STATISTICS.md.
REDUCTIONS = (
    "sum",              # Σ G
    "l1",               # ‖G‖₁
    "sq",               # ‖G‖₂²
    "max_abs",          # max |G|
    "max_abs_index",    # flat index of max |G|
    "min",              # min G (histogram range)
    "max",              # max G
    "accumulated_l1",   # ‖C‖₁
    "accumulated_sq",   # ‖C‖₂²
    "accumulated_max_abs",  # max |C|
    "accumulated_abs_l1",   # Σ_k ‖G_k‖₁, after this window
    "dissolving_max",   # max over blocks of the block mean of D
    "nan_count",
    "inf_count",
    "zero_units",       # output units (last axis) whose G is all 0
)


def _quiet_non_finite(function):
    """Non-finite gradients are data here, not errors: no numpy warnings."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            return function(*args, **kwargs)

    return wrapper


def as_dicts(columns):
    """Columns name -> ``(variables,)`` as one dict name -> float per
    variable."""
    names = list(columns)
    table = np.stack([columns[name] for name in names], axis=1).tolist()
    return [dict(zip(names, row)) for row in table]


def statistics_matrix(columns):
    """`variable_columns` as a float64 ``(variables, stats)`` matrix in
    ``VARIABLE_STAT_NAMES`` order (the written vectors, one row each)."""
    return np.stack([columns[name] for name in
                     variable_stats.VARIABLE_STAT_NAMES], axis=1)


@_quiet_non_finite
def variable_columns(reductions, sizes, steps, step_l1=None,
                     step_sq=None, units=None, weight_l2=None,
                     first_nonfinite_step=None):
    """Per-variable statistics (``VARIABLE_STAT_NAMES``) from reductions,
    one float64 array over the variables per statistic.

    Vectorised over variables: the device returns, per variable, the sums
    and maxima named in ``REDUCTIONS`` (over finite elements);
    every statistic of docs/STATISTICS.md is a function of those.

    Args:
      reductions: ``(variables, len(REDUCTIONS))`` float64.
      sizes: ``(variables,)`` element counts.
      steps: ``(variables,)`` steps summed into ``G`` (training) or probe
        batches.
      step_l1, step_sq: ``(variables,)`` sums over the window's steps of
        ``‖g_i‖₁`` and ``‖g_i‖₂²`` (training), or None.
      units: ``(variables,)`` output units (the last axis; 0 for a scalar),
        for ``dead_units``.
      weight_l2: ``(variables,)`` ``‖W‖₂`` at the window's end, or None.
      first_nonfinite_step: ``(variables,)`` the first optimizer step with
        a non-finite applied gradient, negative for none (training), or
        None.

    Returns:
      dict name -> ``(variables,)`` float64, in ``VARIABLE_STAT_NAMES``
      order; with ``step_sq``, also ``noise_trace`` and ``noise_signal``
      (see `noise_scale_terms`).
    """
    r = {name: np.asarray(reductions, np.float64)[:, i]
         for i, name in enumerate(REDUCTIONS)}
    sizes = np.asarray(sizes, np.float64)
    steps = np.asarray(steps, np.float64)
    count = sizes - r["nan_count"] - r["inf_count"]
    none = count <= 0
    mean = np.where(none, np.nan, r["sum"] / count)
    columns = {
        "size": sizes,
        "steps": steps,
        "norm": r["l1"] / sizes,
        "norm_accumulated": r["accumulated_l1"] / sizes,
        "accumulated_norm": r["accumulated_abs_l1"] / sizes,
        "l2": np.sqrt(r["sq"]),
        "l2_accumulated": np.sqrt(r["accumulated_sq"]),
        "mean": mean,
        "std": np.where(none, np.nan, np.sqrt(np.maximum(
            r["sq"] / count - np.square(mean), 0.0))),
        "mean_abs": np.where(none, np.nan, r["l1"] / count),
        "max_abs": np.where(none, np.nan, r["max_abs"]),
        "max_abs_index": np.where(none, np.nan, r["max_abs_index"]),
        "accumulated_max_abs": r["accumulated_max_abs"],
        "dissolving_max": np.where(np.isfinite(r["dissolving_max"]),
                                   r["dissolving_max"], np.nan),
        "nan_count": r["nan_count"],
        "inf_count": r["inf_count"],
    }
    columns["dissolving_norm"] = (columns["accumulated_norm"]
                                  - columns["norm_accumulated"])
    nan = np.full(sizes.shape, np.nan)
    units = nan if units is None else np.asarray(units, np.float64)
    columns["dead_units"] = np.where(units > 0, r["zero_units"] / np.where(
        units > 0, units, 1.0), np.nan)
    columns["weight_l2"] = (nan if weight_l2 is None
                            else np.asarray(weight_l2, np.float64))
    first = (nan if first_nonfinite_step is None
             else np.asarray(first_nonfinite_step, np.float64))
    columns["first_nonfinite_step"] = np.where(first >= 0, first, np.nan)
    columns["within_epoch_dissolving_norm"] = nan
    columns["noise_scale"] = nan
    if step_l1 is not None:
        columns["within_epoch_dissolving_norm"] = (
            np.asarray(step_l1, np.float64) - r["l1"]) / sizes
    if step_sq is not None:
        trace, signal = noise_scale_terms(r["sq"], step_sq, steps)
        columns["noise_scale"] = np.where(signal > 0, trace / np.where(
            signal > 0, signal, 1.0), np.nan)
        columns["noise_trace"], columns["noise_signal"] = trace, signal
    names = list(variable_stats.VARIABLE_STAT_NAMES)
    if step_sq is not None:
        names += ["noise_trace", "noise_signal"]
    return {name: np.broadcast_to(np.asarray(columns[name], np.float64),
                                  sizes.shape) for name in names}


@_quiet_non_finite
def noise_scale_terms(sq, step_sq, steps):
    """Numerator and denominator of the simple gradient noise scale.

    With ``n`` steps, ``S = Σ_i ‖g_i‖₂²`` and ``m = G / n`` (``sq = ‖G‖₂²``):
    ``trace = (S / n - ‖m‖²) · n / (n - 1)`` (a sum of per-element variances,
    clipped at 0 against rounding) estimates the trace of the covariance of
    one step's gradient and ``signal = ‖m‖²`` the squared norm of the mean.
    NaN below two steps. Vectorised over variables.
    """
    sq = np.asarray(sq, np.float64)
    step_sq = np.asarray(step_sq, np.float64)
    n = np.asarray(steps, np.float64)
    enough = n >= 2
    safe = np.where(enough, n, 2.0)
    signal = sq / np.square(safe)
    trace = np.maximum((step_sq / safe - signal) * safe / (safe - 1.0), 0.0)
    return np.where(enough, trace, np.nan), np.where(enough, signal, np.nan)


def _ratio(numerator, denominator):
    if not (math.isfinite(numerator) and math.isfinite(denominator)):
        return float("nan")
    if denominator <= 0:
        return float("nan")
    return numerator / denominator


def global_statistics(per_variable, skipped_steps=0, step_table=None):
    """Whole-model figures from the per-variable ones (``GLOBAL_STAT_NAMES``).

    Args:
      per_variable: `variable_columns`'s columns; the noise scale sums the
        ``noise_trace`` / ``noise_signal`` of the variables that have them
        (training source, at least two steps).
      skipped_steps: steps the loss-scale optimizer skipped (non-finite).
      step_table: ``(steps, 2)`` array of per-step ``(l2, max_abs)``, or
        ``None``.
    """
    out = dict.fromkeys(scalars.GLOBAL_STAT_NAMES, float("nan"))

    def column(name):
        """The variables' values of ``name`` in order, as Python floats
        (summed in the variables' order); None where it is not a column."""
        values = per_variable.get(name)
        return None if values is None else np.asarray(values).tolist()

    def total(name):
        values = [v for v in column(name) if math.isfinite(v)]
        return float(sum(values)) if values else float("nan")

    for name in ("norm", "norm_accumulated", "accumulated_norm",
                 "dissolving_norm", "within_epoch_dissolving_norm"):
        out[name] = total(name)
    for name in ("l2", "l2_accumulated"):
        squares = [v ** 2 for v in column(name) if math.isfinite(v)]
        out[name] = float(math.sqrt(sum(squares))) if squares else float("nan")
    maxima = [v for v in column("max_abs") if math.isfinite(v)]
    out["max_abs"] = float(max(maxima)) if maxima else float("nan")
    out["nan_count"] = float(sum(column("nan_count")))
    out["inf_count"] = float(sum(column("inf_count")))
    steps = column("steps")
    finite_steps = [v for v in steps if math.isfinite(v)]
    out["steps"] = float(max(finite_steps)) if finite_steps else float("nan")
    traces, signals = column("noise_trace"), column("noise_signal")
    terms = [] if traces is None else [
        (t, g) for t, g, n in zip(traces, signals, steps) if n >= 2]
    if terms and all(math.isfinite(v) for pair in terms for v in pair):
        out["noise_scale"] = _ratio(sum(t for t, _ in terms),
                                    sum(g for _, g in terms))
    out["skipped_steps"] = float(skipped_steps)
    if step_table is not None and len(step_table):
        table = np.asarray(step_table, dtype=np.float64)
        out["step_l2_max"] = float(np.nanmax(table[:, 0])) if np.isfinite(
            table[:, 0]).any() else float("nan")
        out["step_max_abs_max"] = float(np.nanmax(table[:, 1])) if np.isfinite(
            table[:, 1]).any() else float("nan")
    return out
