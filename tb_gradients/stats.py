"""The statistics of docs/STATISTICS.md, as pure numpy functions.

Nothing here knows about TensorFlow, Keras or TensorBoard: every function
takes numpy arrays and returns numpy arrays or floats, so that tests can
compare each one with a computation written by hand.

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

from tb_gradients import metadata


def _quiet_non_finite(function):
    """Non-finite gradients are data here, not errors: no numpy warnings."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            return function(*args, **kwargs)

    return wrapper


@_quiet_non_finite
def accumulate(accumulated, accumulated_abs, gradient):
    """Adds one epoch gradient to the running sums ``C`` and ``A``.

    Args:
      accumulated: ``C_{e-1}`` (float64 array) or ``None`` before the first
        epoch.
      accumulated_abs: ``A_{e-1}`` or ``None``.
      gradient: ``G_e``.

    Returns:
      ``(C_e, A_e)`` as new float64 arrays.
    """
    gradient = np.asarray(gradient, dtype=np.float64)
    if accumulated is None:
        return gradient.copy(), np.abs(gradient)
    return accumulated + gradient, accumulated_abs + np.abs(gradient)


@_quiet_non_finite
def dissolving(accumulated, accumulated_abs):
    """Elementwise dissolving gradient ``D = A - |C|`` (never negative).

    Mathematically ``|sum G_k| <= sum |G_k|``; the clip only removes the
    rounding error of the subtraction. NaN stays NaN.
    """
    result = accumulated_abs - np.abs(accumulated)
    return np.where(result < 0, 0.0, result)


def _finite(values):
    values = np.asarray(values, dtype=np.float64)
    mask = np.isfinite(values)
    return np.where(mask, values, 0.0), mask


@_quiet_non_finite
def variable_statistics(
    gradient,
    accumulated,
    accumulated_abs,
    steps=float("nan"),
    sum_abs=None,
    sum_sq=None,
):
    """Per-variable statistics of one epoch (``VARIABLE_STAT_NAMES``).

    Non-finite elements are counted (``nan_count``, ``inf_count``) and left
    out of every other statistic, so one NaN does not hide the rest of the
    variable. A statistic with no finite element to work on is NaN.

    Args:
      gradient: ``G_e``.
      accumulated: ``C_e`` (already including ``G_e``).
      accumulated_abs: ``A_e``.
      steps: number of optimizer steps summed into ``G_e`` (training).
      sum_abs: ``sum_steps |g|`` within the epoch (training), or ``None``.
      sum_sq: ``sum_steps g**2`` within the epoch (training), or ``None``.

    Returns:
      A dict from every name of ``metadata.VARIABLE_STAT_NAMES`` to a float;
      with ``sum_sq``, also ``noise_trace`` and ``noise_signal`` (see
      `noise_scale_terms`).
    """
    g, g_finite = _finite(gradient)
    c, _ = _finite(accumulated)
    a, _ = _finite(accumulated_abs)
    d, _ = _finite(dissolving(np.asarray(accumulated, np.float64),
                              np.asarray(accumulated_abs, np.float64)))
    size = g.size
    n_finite = int(g_finite.sum())
    abs_g = np.abs(g)
    out = dict.fromkeys(metadata.VARIABLE_STAT_NAMES, float("nan"))
    out["size"] = float(size)
    out["steps"] = float(steps)
    if size:
        out["norm"] = float(abs_g.sum() / size)
        out["norm_accumulated"] = float(np.abs(c).sum() / size)
        out["accumulated_norm"] = float(a.sum() / size)
        out["dissolving_norm"] = out["accumulated_norm"] - out["norm_accumulated"]
        out["l2"] = float(math.sqrt(float(np.square(g).sum())))
        out["l2_accumulated"] = float(math.sqrt(float(np.square(c).sum())))
        out["accumulated_max_abs"] = float(np.abs(c).max())
        out["dissolving_max"] = float(d.max())
    if n_finite:
        finite_values = g[g_finite]
        out["mean"] = float(finite_values.mean())
        out["std"] = float(finite_values.std())
        out["mean_abs"] = float(np.abs(finite_values).mean())
        index = int(np.argmax(abs_g))
        out["max_abs"] = float(abs_g.reshape(-1)[index])
        out["max_abs_index"] = float(index)
    raw = np.asarray(gradient)
    out["nan_count"] = float(np.isnan(raw).sum())
    out["inf_count"] = float(np.isinf(raw).sum())
    if sum_abs is not None and size:
        s_abs, _ = _finite(sum_abs)
        out["within_epoch_dissolving_norm"] = float(
            (s_abs.sum() - abs_g.sum()) / size
        )
    if sum_sq is not None:
        trace, signal = noise_scale_terms(gradient, sum_sq, steps)
        out["noise_scale"] = _ratio(trace, signal)
        # Kept for the whole-model figure (`global_statistics`), which sums
        # them; they are not written per variable.
        out["noise_trace"], out["noise_signal"] = trace, signal
    return out


@_quiet_non_finite
def noise_scale_terms(gradient, sum_sq, steps):
    """Numerator and denominator of the simple gradient noise scale.

    With ``n`` steps, per-step gradients ``g_i`` and ``m = G / n``:
    ``trace = sum_elements (sum_sq / n - m**2) * n / (n - 1)`` estimates the
    trace of the covariance of one step's gradient and ``signal = |m|**2``
    the squared norm of the mean. Returns ``(nan, nan)`` below two steps.
    """
    if not steps or not math.isfinite(steps) or steps < 2:
        return float("nan"), float("nan")
    g, _ = _finite(gradient)
    q, _ = _finite(sum_sq)
    mean = g / steps
    variance = (q / steps - np.square(mean)) * (steps / (steps - 1.0))
    trace = float(np.clip(variance, 0.0, None).sum())
    signal = float(np.square(mean).sum())
    return trace, signal


def _ratio(numerator, denominator):
    if not (math.isfinite(numerator) and math.isfinite(denominator)):
        return float("nan")
    if denominator <= 0:
        return float("nan")
    return numerator / denominator


def global_statistics(per_variable, skipped_steps=0, step_table=None):
    """Whole-model figures from the per-variable ones (``GLOBAL_STAT_NAMES``).

    Args:
      per_variable: list of dicts from `variable_statistics`; the noise
        scale sums the ``noise_trace`` / ``noise_signal`` of the variables
        that have them (training source, at least two steps).
      skipped_steps: steps the loss-scale optimizer skipped (non-finite).
      step_table: ``(steps, 2)`` array of per-step ``(l2, max_abs)``, or
        ``None``.
    """
    out = dict.fromkeys(metadata.GLOBAL_STAT_NAMES, float("nan"))

    def total(name):
        values = [s[name] for s in per_variable if math.isfinite(s[name])]
        return float(sum(values)) if values else float("nan")

    for name in ("norm", "norm_accumulated", "accumulated_norm",
                 "dissolving_norm", "within_epoch_dissolving_norm"):
        out[name] = total(name)
    for name in ("l2", "l2_accumulated"):
        squares = [s[name] ** 2 for s in per_variable if math.isfinite(s[name])]
        out[name] = float(math.sqrt(sum(squares))) if squares else float("nan")
    maxima = [s["max_abs"] for s in per_variable if math.isfinite(s["max_abs"])]
    out["max_abs"] = float(max(maxima)) if maxima else float("nan")
    out["nan_count"] = float(sum(s["nan_count"] for s in per_variable))
    out["inf_count"] = float(sum(s["inf_count"] for s in per_variable))
    steps = [s["steps"] for s in per_variable if math.isfinite(s["steps"])]
    out["steps"] = float(max(steps)) if steps else float("nan")
    terms = [(s["noise_trace"], s["noise_signal"]) for s in per_variable
             if "noise_trace" in s and s["steps"] >= 2]
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


def view_shape(shape):
    """The 2-D view of a variable used for heatmaps.

    Dense ``(in, out)`` stays as is; a convolution kernel
    ``(kh, kw, ..., cin, cout)`` becomes ``(kh*kw*...*cin, cout)``; a vector
    ``(n,)`` becomes ``(1, n)``; a scalar ``(1, 1)``.
    """
    shape = tuple(int(d) for d in shape)
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return 1, shape[0]
    rows = 1
    for d in shape[:-1]:
        rows *= d
    return rows, shape[-1]


def pool_blocks(rows, cols, max_cells):
    """Block size ``(block_rows, block_cols)`` giving at most ``max_cells``.

    Halves the larger pooled side until the cell count fits, so a tall
    kernel keeps its column resolution as long as possible.
    """
    if max_cells < 1:
        raise ValueError(f"max_cells must be >= 1. Received: {max_cells}")
    block_rows, block_cols = 1, 1
    out_rows, out_cols = rows, cols
    while out_rows * out_cols > max_cells:
        if out_rows >= out_cols:
            block_rows = -(-rows // -(-out_rows // 2))
            out_rows = -(-rows // block_rows)
        else:
            block_cols = -(-cols // -(-out_cols // 2))
            out_cols = -(-cols // block_cols)
    return block_rows, block_cols


def _reduce_blocks(view, block_rows, block_cols, ufunc):
    starts_r = np.arange(0, view.shape[0], block_rows)
    starts_c = np.arange(0, view.shape[1], block_cols)
    return ufunc.reduceat(ufunc.reduceat(view, starts_r, axis=0), starts_c,
                          axis=1)


def pool_mean(view, block_rows, block_cols):
    """Mean over each block (the last blocks may be smaller). NaN spreads."""
    sums = _reduce_blocks(view, block_rows, block_cols, np.add)
    counts_r = np.diff(np.append(np.arange(0, view.shape[0], block_rows),
                                 view.shape[0]))
    counts_c = np.diff(np.append(np.arange(0, view.shape[1], block_cols),
                                 view.shape[1]))
    return sums / np.outer(counts_r, counts_c)


def pool_max(view, block_rows, block_cols):
    """Maximum over each block. NaN spreads (``np.maximum``)."""
    return _reduce_blocks(view, block_rows, block_cols, np.maximum)


@_quiet_non_finite
def heatmap_channels(gradient, accumulated, accumulated_abs, max_cells):
    """Pooled heatmap channels of one variable (``HEATMAP_CHANNELS``).

    The elementwise maths (|G|, |C|, D) is done at full resolution first and
    only then pooled, so a block's value is the mean (or max) of the true
    elementwise quantity.

    Returns:
      ``(channels, (block_rows, block_cols))`` with ``channels`` a float64
      array of shape ``(4, pooled_rows, pooled_cols)``.
    """
    rows, cols = view_shape(np.shape(gradient))
    block_rows, block_cols = pool_blocks(rows, cols, max_cells)
    abs_g = np.abs(np.asarray(gradient, np.float64)).reshape(rows, cols)
    abs_c = np.abs(np.asarray(accumulated, np.float64)).reshape(rows, cols)
    diss = dissolving(np.asarray(accumulated, np.float64),
                      np.asarray(accumulated_abs, np.float64)).reshape(rows, cols)
    channels = np.stack([
        pool_mean(abs_g, block_rows, block_cols),
        pool_max(abs_g, block_rows, block_cols),
        pool_mean(abs_c, block_rows, block_cols),
        pool_mean(diss, block_rows, block_cols),
    ])
    return channels, (block_rows, block_cols)


def encode_log_uint8(values, scale, decades=metadata.HEATMAP_DECADES):
    """Quantises non-negative values to uint8 on a log scale below ``scale``.

    Code 0 is zero (or anything below ``scale * 10**-decades``), codes
    1..253 are evenly spaced in ``log10`` from ``scale * 10**-decades`` to
    ``scale``, 254 is +Inf, 255 is NaN. The relative rounding error is at
    most ``10**(decades / 252 / 2) - 1`` (2.8 % for 6 decades).
    """
    values = np.asarray(values, dtype=np.float64)
    codes = np.zeros(values.shape, dtype=np.uint8)
    levels = metadata.HEATMAP_CODE_LEVELS
    if scale and math.isfinite(scale) and scale > 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            position = (np.log10(values / scale) + decades) / decades
        position = np.round(position * (levels - 1)) + 1
        visible = np.isfinite(position) & (position >= 1)
        codes[visible] = np.clip(position[visible], 1, levels).astype(np.uint8)
    codes[np.isposinf(values)] = metadata.HEATMAP_CODE_INF
    codes[np.isnan(values)] = metadata.HEATMAP_CODE_NAN
    return codes


def decode_log_uint8(codes, scale, decades=metadata.HEATMAP_DECADES):
    """Inverse of `encode_log_uint8` (up to its rounding)."""
    codes = np.asarray(codes)
    levels = metadata.HEATMAP_CODE_LEVELS
    exponent = (codes.astype(np.float64) - 1) / (levels - 1) * decades - decades
    values = float(scale) * np.power(10.0, exponent)
    values = np.where(codes == 0, 0.0, values)
    values = np.where(codes == metadata.HEATMAP_CODE_INF, np.inf, values)
    return np.where(codes == metadata.HEATMAP_CODE_NAN, np.nan, values)


def histogram_buckets(values, bucket_count=30):
    """Histogram in the histograms plugin's ``(k, 3)`` format.

    Rows are ``(left_edge, right_edge, count)`` with ``bucket_count`` equal
    buckets between the minimum and maximum finite value, the layout
    ``tf.summary.histogram`` writes, computed on the host without its one-hot
    temporary. Non-finite values are left out (they are counted by
    `variable_statistics`). No finite value gives a ``(0, 3)`` array.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.zeros((0, 3), dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    if low == high:
        return np.array([[low - 0.5, high + 0.5, float(values.size)]] +
                        [[high + 0.5, high + 0.5, 0.0]] * (bucket_count - 1))
    counts, edges = np.histogram(values, bins=bucket_count, range=(low, high))
    return np.stack([edges[:-1], edges[1:], counts.astype(np.float64)], axis=1)


def _block_mean_axis(values, block, axis):
    """Mean over consecutive blocks of ``block`` along ``axis``."""
    length = values.shape[axis]
    starts = np.arange(0, length, block)
    sums = np.add.reduceat(values, starts, axis=axis)
    counts = np.diff(np.append(starts, length)).astype(np.float64)
    shape = [1] * values.ndim
    shape[axis] = len(counts)
    return sums / counts.reshape(shape)


@_quiet_non_finite
def timestep_view(gradient, mask=None, max_timesteps=512, max_channels=32,
                  directions=1):
    """Pools the gradient w.r.t. a layer's output for storage and plotting.

    Args:
      gradient: ``(samples, timesteps, ...)`` (a layer returning sequences)
        or ``(samples, ...)`` (no time axis); trailing axes are flattened
        into channels.
      mask: ``(samples, timesteps)`` booleans (True = real timestep) or None.
      max_timesteps: timesteps are block-averaged to at most this many.
      max_channels: channels are block-averaged to at most this many per
        direction.
      directions: 2 for a concatenating `Bidirectional` layer: each half is
        pooled on its own so that no block mixes the two directions.

    Returns:
      dict with ``values`` (float32, ``(samples, T', C')`` or
      ``(samples, C')``), ``l2`` (``(samples, T')``: the L2 norm over all
      unpooled channels of each timestep, block-averaged over time; None
      without a time axis), ``valid`` (``(samples, T')``: fraction of real,
      unmasked timesteps per block), ``time_block``, ``channel_block``,
      ``timesteps``, ``channels`` (unpooled sizes) and ``direction_ranges``
      (pooled channel ``[start, end)`` of each direction).
    """
    gradient = np.asarray(gradient, dtype=np.float64)
    samples = gradient.shape[0]
    has_time = mask is not None or gradient.ndim >= 3
    if has_time:
        flat = gradient.reshape(samples, gradient.shape[1], -1)
    else:
        flat = gradient.reshape(samples, 1, -1)
    timesteps, channels = flat.shape[1], flat.shape[2]
    per_direction = channels // directions if directions > 1 else channels
    channel_block = max(1, -(-per_direction // max_channels))
    time_block = max(1, -(-timesteps // max_timesteps)) if has_time else 1
    parts, ranges, start = [], [], 0
    for d in range(directions):
        part = flat[:, :, d * per_direction:(d + 1) * per_direction]
        pooled = _block_mean_axis(part, channel_block, axis=2)
        parts.append(pooled)
        ranges.append([start, start + pooled.shape[2]])
        start += pooled.shape[2]
    values = np.concatenate(parts, axis=2)
    out = {"time_block": time_block, "channel_block": channel_block,
           "timesteps": timesteps if has_time else 0, "channels": channels,
           "direction_ranges": ranges, "l2": None, "valid": None}
    if not has_time:
        out["values"] = values[:, 0, :].astype(np.float32)
        return out
    out["values"] = _block_mean_axis(values, time_block, axis=1).astype(
        np.float32)
    norms = np.sqrt(np.square(flat).sum(axis=2))
    out["l2"] = _block_mean_axis(norms, time_block, axis=1).astype(np.float32)
    valid = (np.ones((samples, timesteps)) if mask is None
             else np.asarray(mask, dtype=np.float64).reshape(samples, -1))
    out["valid"] = _block_mean_axis(valid, time_block, axis=1).astype(
        np.float32)
    return out


# Gate order of Keras's fused recurrent weights (last axis).
GATES = {
    "LSTM": ("input", "forget", "cell", "output"),
    "GRU": ("update", "reset", "candidate"),
}
GATE_STAT_NAMES = ("l2", "mean_abs", "max_abs")


def gate_split(gradient, gate_count):
    """Splits a fused recurrent weight's gradient into its gates.

    Keras stores LSTM (i, f, c, o) and GRU (z, r, h) weights side by side on
    the last axis: ``kernel (in, G*u)``, ``recurrent_kernel (u, G*u)``,
    ``bias (G*u,)`` or ``(2, G*u)`` (GRU with ``reset_after``).
    """
    gradient = np.asarray(gradient, dtype=np.float64)
    return np.split(gradient, gate_count, axis=-1)


@_quiet_non_finite
def gate_statistics(gradient, gate_count):
    """``(gates, 3)`` array of L2 norm, mean |g| and max |g| per gate."""
    rows = []
    for part in gate_split(gradient, gate_count):
        finite, _ = _finite(part)
        rows.append([math.sqrt(float(np.square(finite).sum())),
                     float(np.abs(finite).mean()) if finite.size else 0.0,
                     float(np.abs(finite).max()) if finite.size else 0.0])
    return np.array(rows, dtype=np.float64)


@_quiet_non_finite
def gate_heatmaps(gradient, gate_count, max_cells):
    """Pooled mean |g| of each gate: ``(gates, rows, cols)`` and the block."""
    parts = gate_split(gradient, gate_count)
    rows, cols = view_shape(parts[0].shape)
    block_rows, block_cols = pool_blocks(rows, cols, max_cells)
    pooled = [pool_mean(np.abs(p).reshape(rows, cols), block_rows, block_cols)
              for p in parts]
    return np.stack(pooled), (block_rows, block_cols)
