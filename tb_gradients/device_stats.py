"""The per-variable statistics of docs/STATISTICS.md, computed on the device.

At a window's end (today: an epoch) one compiled call per variable reads the
window gradient ``G`` where it lives, updates that variable's accumulated
state in place and returns only reductions: the statistics vector, the
pooled heatmap channels, the histogram counts and the per-gate figures.
Nothing of the variable's size crosses to the host, so the host's work per
window is independent of the parameter count.

State kept per variable and source (`AccumulatedState`), with what it is for:

* ``accumulated`` ``C = Σ_k G_k``, float32, full size: every statistic of the
  accumulated gradient is elementwise in ``C``;
* ``compensation``, bfloat16, full size: the rounding error of the last
  ``C += G`` (Kahan summation), which keeps ``C`` accurate to float32 over
  thousands of windows for 2 bytes per parameter;
* ``pooled_abs``, float64, one value per heatmap block: the block sums of
  ``A = Σ_k |G_k|``. ``A`` only ever enters block means (the dissolving
  heatmap, ``dissolving_max``) and its total (``accumulated_norm``), and
  block sums are linear, so the full-size ``A`` is never needed;
* ``accumulated_l1``, float64 scalar: ``Σ_k ‖G_k‖₁`` over finite elements.

Graph functions are cached per static layout (shape, pooling, buckets,
gates, encoding), not per variable or model: every variable of that layout,
in any model and any callback, reuses one trace.
"""

import math

import numpy as np
import tensorflow as tf

from tb_gradients import metadata
from tb_gradients import stats
from tb_gradients import tracing

# Columns returned after ``metadata.VARIABLE_STAT_NAMES``: the numerator and
# denominator of the noise scale, which the whole-model figure sums.
EXTRA_COLUMNS = ("noise_trace", "noise_signal")
STAT_COLUMNS = metadata.VARIABLE_STAT_NAMES + EXTRA_COLUMNS

# Per-variable scalars summed over the steps of a window (training source):
# the number of steps, Σ_i ‖g_i‖₁ and Σ_i ‖g_i‖₂².
WINDOW_SCALARS = ("steps", "step_l1", "step_sq")

# Grid of the pooled accumulated |G| when heatmaps are off: it still serves
# `dissolving_max`.
DEFAULT_POOL_CELLS = 128 * 128

_COLUMN = {name: i for i, name in enumerate(STAT_COLUMNS)}


class VariableLayout:
    """Static description of one variable's window-end computation.

    Args:
      shape: the variable's shape.
      max_cells: cells of the pooled grid (heatmaps and accumulated |G|).
      heatmap: whether heatmap channels are returned.
      encoding: ``"uint8"`` or ``"float32"`` heatmap encoding.
      buckets: histogram buckets (0: no histogram).
      gate_count: fused recurrent gates on the last axis (0: none).
      gate_cells: cells per gate heatmap (0: none).
    """

    def __init__(self, shape, max_cells, heatmap, encoding, buckets,
                 gate_count=0, gate_cells=0):
        self.shape = tuple(int(d) for d in shape)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.view = stats.view_shape(self.shape)
        self.block = stats.pool_blocks(*self.view, max(1, max_cells))
        self.grid = (-(-self.view[0] // self.block[0]),
                     -(-self.view[1] // self.block[1]))
        self.heatmap = bool(heatmap)
        self.encoding = encoding
        self.buckets = int(buckets)
        self.gate_count = int(gate_count)
        self.gate_cells = int(gate_cells)
        self.gate_view = self.gate_block = None
        if self.gate_count:
            gate_shape = self.shape[:-1] + (self.shape[-1] // self.gate_count,)
            self.gate_view = stats.view_shape(gate_shape)
            self.gate_block = stats.pool_blocks(*self.gate_view,
                                                max(1, self.gate_cells))

    def key(self):
        return (self.shape, self.block, self.heatmap, self.encoding,
                self.buckets, self.gate_count, self.gate_block)


class AccumulatedState:
    """One variable's state carried from window to window (see module doc)."""

    def __init__(self, layout, name):
        shape = layout.shape
        self.accumulated = tf.Variable(
            tf.zeros(shape, tf.float32), trainable=False,
            name=f"tb_gradients_{name}_accumulated")
        self.compensation = tf.Variable(
            tf.zeros(shape, tf.bfloat16), trainable=False,
            name=f"tb_gradients_{name}_compensation")
        self.pooled_abs = tf.Variable(
            tf.zeros(layout.grid, tf.float64), trainable=False,
            name=f"tb_gradients_{name}_pooled_abs")
        self.accumulated_l1 = tf.Variable(
            tf.constant(0.0, tf.float64), trainable=False,
            name=f"tb_gradients_{name}_accumulated_l1")

    def variables(self):
        return (self.accumulated, self.compensation, self.pooled_abs,
                self.accumulated_l1)


# -- pure pieces (tensors in, tensors out) -----------------------------------


def kahan_add(total, compensation, value):
    """``total + value`` with Kahan compensation; returns both new tensors.

    ``compensation`` is the part of earlier additions that ``total`` could
    not hold (stored rounded to bfloat16); it is fed back into the next
    addition. A non-finite element keeps its raw value and a zero
    compensation, so NaN stays NaN and Inf stays Inf.
    """
    corrected = value - tf.cast(compensation, tf.float32)
    new_total = total + corrected
    lost = (new_total - total) - corrected
    lost = tf.where(tf.math.is_finite(lost), lost, tf.zeros_like(lost))
    return new_total, tf.cast(lost, tf.bfloat16)


def _segment_ids(length, block):
    return tf.constant(np.arange(length, dtype=np.int32) // block)


def pool(view, block, segment_reducer):
    """Reduces ``view`` over blocks of ``block = (rows, cols)`` elements.

    The last block of each axis may be smaller. ``segment_reducer`` is
    `tf.math.segment_sum` or `tf.math.segment_max`.
    """
    rows, cols = view.shape
    block_rows, block_cols = block
    if block_rows > 1:
        view = segment_reducer(view, _segment_ids(rows, block_rows))
    if block_cols > 1:
        view = tf.transpose(segment_reducer(
            tf.transpose(view), _segment_ids(cols, block_cols)))
    return view


def block_counts(view, block):
    """Number of elements of each pooled block, float64 ``(grid)``."""
    rows, cols = view
    block_rows, block_cols = block
    r = np.diff(np.append(np.arange(0, rows, block_rows), rows))
    c = np.diff(np.append(np.arange(0, cols, block_cols), cols))
    return tf.constant(np.outer(r, c).astype(np.float64))


def encode_log_uint8(values, scale, decades=metadata.HEATMAP_DECADES):
    """Device twin of `stats.encode_log_uint8` (float64, same codes)."""
    values = tf.cast(values, tf.float64)
    scale = tf.cast(scale, tf.float64)
    levels = float(metadata.HEATMAP_CODE_LEVELS)
    usable = tf.logical_and(tf.math.is_finite(scale), scale > 0)
    safe_scale = tf.where(usable, scale, tf.constant(1.0, tf.float64))
    ratio = tf.math.divide_no_nan(values, safe_scale)
    position = (tf.math.log(ratio) / math.log(10.0) + decades) / decades
    position = tf.round(position * (levels - 1)) + 1
    visible = tf.logical_and(tf.math.is_finite(position), position >= 1)
    visible = tf.logical_and(visible, usable)
    codes = tf.where(visible, tf.clip_by_value(position, 1, levels),
                     tf.zeros_like(position))
    codes = tf.where(tf.math.is_inf(values), tf.constant(
        float(metadata.HEATMAP_CODE_INF), tf.float64), codes)
    codes = tf.where(tf.math.is_nan(values), tf.constant(
        float(metadata.HEATMAP_CODE_NAN), tf.float64), codes)
    return tf.cast(codes, tf.uint8)


def histogram_counts(values, buckets):
    """Equal-width bucket counts between the min and max of finite values.

    Args:
      values: 1-D float32 tensor of finite values.
      buckets: number of buckets.

    Returns:
      ``(low, high, counts)``: float32 bounds and int32 ``(buckets,)``
      counts; the maximum falls in the last bucket, as with `np.histogram`.
    """
    low = tf.reduce_min(values)
    high = tf.reduce_max(values)
    width = high - low
    scale = tf.where(width > 0, buckets / width, tf.zeros_like(width))
    index = tf.cast((values - low) * scale, tf.int32)
    counts = tf.math.bincount(index, minlength=buckets + 1,
                              maxlength=buckets + 1, dtype=tf.int32)
    counts = tf.concat([counts[:buckets - 1],
                        counts[buckets - 1:buckets] + counts[buckets:]], 0)
    return low, high, counts


def _finite_or_zero(values):
    return tf.where(tf.math.is_finite(values), values, tf.zeros_like(values))


def gradient_figures(gradient, size):
    """Statistics of the window gradient ``G`` over its finite elements.

    The common case (every element finite, seen from the sum) reads ``G`` a
    few times and writes one temporary (``|G|``); a non-finite window takes
    a masked path.

    Returns:
      dict of float64 scalars plus ``abs`` (raw ``|G|``, NaN kept) and
      ``finite`` (the finite elements, 1-D, for the histogram).
    """
    flat = tf.reshape(gradient, [-1])
    total = tf.reduce_sum(flat)
    clean = tf.math.is_finite(total)

    def masked():
        nan = tf.math.count_nonzero(tf.math.is_nan(flat), dtype=tf.int64)
        inf = tf.math.count_nonzero(tf.math.is_inf(flat), dtype=tf.int64)
        finite_mask = tf.math.is_finite(flat)
        return (tf.where(finite_mask, flat, tf.zeros_like(flat)), nan, inf,
                tf.boolean_mask(flat, finite_mask))

    def unmasked():
        zero = tf.constant(0, tf.int64)
        return flat, zero, zero, flat

    values, nan, inf, finite = tf.cond(clean, unmasked, masked)
    raw_abs = tf.abs(flat)
    abs_values = tf.cond(clean, lambda: raw_abs,
                         lambda: _finite_or_zero(raw_abs))
    total = tf.cond(clean, lambda: total, lambda: tf.reduce_sum(values))
    count = tf.cast(size - nan - inf, tf.float64)
    mean = tf.cast(total, tf.float64) / count
    l1 = tf.cast(tf.reduce_sum(abs_values), tf.float64)
    index = tf.argmax(abs_values, output_type=tf.int64)
    max_abs = tf.cast(tf.gather(abs_values, index), tf.float64)
    centred = tf.math.squared_difference(values, tf.cast(mean, values.dtype))
    # Masked elements are zero in `values`: take their (0 - mean)**2 back out.
    spread = (tf.cast(tf.reduce_sum(centred), tf.float64)
              - tf.cast(nan + inf, tf.float64) * tf.square(mean))
    l2 = tf.cast(tf.math.reduce_euclidean_norm(values), tf.float64)
    nothing = tf.equal(count, 0)
    nan_value = tf.constant(float("nan"), tf.float64)
    return {
        "abs": raw_abs, "finite": finite, "l1": l1, "l2": l2,
        "mean": tf.where(nothing, nan_value, mean),
        "std": tf.where(nothing, nan_value,
                        tf.sqrt(tf.maximum(spread, 0.0) / count)),
        "mean_abs": tf.where(nothing, nan_value, l1 / count),
        "max_abs": tf.where(nothing, nan_value, max_abs),
        "max_abs_index": tf.where(nothing, nan_value,
                                  tf.cast(index, tf.float64)),
        "nan_count": tf.cast(nan, tf.float64),
        "inf_count": tf.cast(inf, tf.float64),
    }


def accumulated_figures(accumulated):
    """``‖C‖₁``, ``‖C‖₂``, ``max|C|`` over finite elements, and raw ``|C|``."""
    raw_abs = tf.abs(tf.reshape(accumulated, [-1]))
    l1 = tf.reduce_sum(raw_abs)
    clean = tf.math.is_finite(l1)
    abs_values = tf.cond(clean, lambda: raw_abs,
                         lambda: _finite_or_zero(raw_abs))
    l1 = tf.cond(clean, lambda: l1, lambda: tf.reduce_sum(abs_values))
    return {
        "abs": raw_abs,
        "l1": tf.cast(l1, tf.float64),
        "l2": tf.cast(tf.math.reduce_euclidean_norm(abs_values), tf.float64),
        "max_abs": tf.cast(tf.reduce_max(abs_values), tf.float64),
    }


def noise_scale_terms(window_scalars, l2):
    """Trace and signal of the simple noise scale from per-step scalars.

    With ``n`` steps, ``S = Σ_i ‖g_i‖²`` and ``m = G / n``: ``trace =
    (S / n - ‖m‖²) · n / (n - 1)`` (clipped at 0, which only removes
    rounding: it is a sum of per-element variances) and ``signal = ‖m‖²``.
    NaN below two steps.
    """
    steps, step_sq = window_scalars[0], window_scalars[2]
    signal = tf.math.divide_no_nan(tf.square(l2), tf.square(steps))
    trace = (step_sq / tf.maximum(steps, 1.0) - signal) * steps / tf.maximum(
        steps - 1.0, 1.0)
    enough = steps >= 2
    nan_value = tf.constant(float("nan"), tf.float64)
    return (tf.where(enough, tf.maximum(trace, 0.0), nan_value),
            tf.where(enough, signal, nan_value))


# -- the compiled window-end call --------------------------------------------


def _window_end(layout, gradient, state, window_scalars, training,
                record=True):
    """Updates ``state`` with ``G`` and returns the window's reductions.

    A variable that fits the pooled grid unpooled (at most ``max_cells``
    elements: biases, normalisation scales, small kernels) is worked on in
    float64, with ``C`` read back with its compensation: its figures are
    then as exact as float64 host maths, at a cost independent of the
    model's size. Larger variables are reduced in float32.

    With ``record=False`` (a window that is not logged) only the state is
    updated and nothing is returned.
    """
    accumulated, compensation, pooled_abs, accumulated_l1 = state
    size = layout.size
    exact = layout.block == (1, 1)
    work = tf.float64 if exact else tf.float32
    gradient = tf.cast(tf.convert_to_tensor(gradient), tf.float32)
    g = gradient_figures(tf.cast(gradient, work), size)
    new_c, new_compensation = kahan_add(accumulated.read_value(),
                                        compensation.read_value(), gradient)
    if exact:
        c = accumulated_figures(tf.cast(new_c, work)
                                - tf.cast(new_compensation, work))
    else:
        c = accumulated_figures(new_c)
    counts = block_counts(layout.view, layout.block)
    abs_view = tf.reshape(g["abs"], layout.view)
    block_abs = tf.cast(pool(abs_view, layout.block, tf.math.segment_sum),
                        tf.float64)
    new_pooled_abs = pooled_abs.read_value() + block_abs
    block_c = tf.cast(pool(tf.reshape(c["abs"], layout.view), layout.block,
                           tf.math.segment_sum), tf.float64)
    dissolving_sum = new_pooled_abs - block_c
    dissolving_mean = tf.where(dissolving_sum < 0,
                               tf.zeros_like(dissolving_sum),
                               dissolving_sum) / counts
    new_l1 = accumulated_l1.read_value() + g["l1"]
    updates = [accumulated.assign(new_c, read_value=False),
               compensation.assign(new_compensation, read_value=False),
               pooled_abs.assign(new_pooled_abs, read_value=False),
               accumulated_l1.assign(new_l1, read_value=False)]
    if not record:
        with tf.control_dependencies(updates):
            return tf.constant(True)

    nan_value = tf.constant(float("nan"), tf.float64)
    column = dict.fromkeys(STAT_COLUMNS, nan_value)
    column["size"] = tf.constant(float(size), tf.float64)
    column["steps"] = window_scalars[0]
    column["norm"] = g["l1"] / size
    column["norm_accumulated"] = c["l1"] / size
    column["accumulated_norm"] = new_l1 / size
    column["dissolving_norm"] = column["accumulated_norm"] - column[
        "norm_accumulated"]
    column["l2"], column["l2_accumulated"] = g["l2"], c["l2"]
    for name in ("mean", "std", "mean_abs", "max_abs", "max_abs_index",
                 "nan_count", "inf_count"):
        column[name] = g[name]
    column["accumulated_max_abs"] = c["max_abs"]
    finite_dissolving = tf.boolean_mask(
        dissolving_mean, tf.math.is_finite(dissolving_mean))
    column["dissolving_max"] = tf.cond(
        tf.size(finite_dissolving) > 0,
        lambda: tf.reduce_max(finite_dissolving), lambda: nan_value)
    if training:
        column["within_epoch_dissolving_norm"] = (
            window_scalars[1] - g["l1"]) / size
        trace, signal = noise_scale_terms(window_scalars, g["l2"])
        column["noise_trace"], column["noise_signal"] = trace, signal
        column["noise_scale"] = tf.where(
            signal > 0, trace / tf.where(signal > 0, signal, 1.0), nan_value)
    out = {"stats": tf.stack([column[name] for name in STAT_COLUMNS])}

    if layout.heatmap:
        block_max = tf.cast(pool(abs_view, layout.block,
                                 tf.math.segment_max), tf.float64)
        # segment_max does not always keep NaN: a block whose sum is NaN is.
        block_max = tf.where(tf.math.is_nan(block_abs), nan_value, block_max)
        channels = [block_abs / counts, block_max, block_c / counts,
                    dissolving_mean]
        if layout.encoding == "float32":
            out["heatmap"] = tf.cast(tf.stack(channels), tf.float32)
        else:
            out["heatmap"] = tf.stack([
                encode_log_uint8(channel, column[scale])
                for channel, scale in zip(
                    channels, metadata.HEATMAP_CHANNEL_SCALES)])
    if layout.buckets:
        low, high, bucket_counts = histogram_counts(g["finite"],
                                                    layout.buckets)
        out["histogram"] = (tf.cast(low, tf.float64),
                            tf.cast(high, tf.float64), bucket_counts)
    if layout.gate_count:
        out["gates"], out["gate_heatmap"] = _gate_figures(
            layout, tf.cast(gradient, work))
    with tf.control_dependencies(updates):
        return tf.nest.map_structure(tf.identity, out)


def _gate_figures(layout, gradient):
    """Per gate: ``(l2, mean|g|, max|g|)`` and the pooled mean |g|."""
    rows, table = [], []
    for part in tf.split(gradient, layout.gate_count, axis=-1):
        finite = _finite_or_zero(tf.abs(part))
        table.append(tf.stack([tf.math.reduce_euclidean_norm(finite),
                               tf.reduce_mean(finite),
                               tf.reduce_max(finite)]))
        if layout.gate_cells:
            view = tf.reshape(tf.abs(part), layout.gate_view)
            pooled = pool(view, layout.gate_block, tf.math.segment_sum)
            rows.append(tf.cast(pooled, tf.float64) / block_counts(
                layout.gate_view, layout.gate_block))
    heatmap = tf.cast(tf.stack(rows), tf.float32) if rows else None
    return tf.cast(tf.stack(table), tf.float64), heatmap


_FUNCTIONS = {}


def window_end_function(layouts, training, record, argument_types=()):
    """One compiled call doing the window end of every variable of a model.

    Called as ``fn(gradients, states, window_scalars)`` with one entry per
    variable (``gradients`` are tensors or the window-sum variables). The
    trace is shared by every call with the same layouts: later `fit` calls,
    new callbacks on the same model and other models of the same
    architecture reuse it. Per-variable results are concatenated so that a
    handful of tensors cross to the host:

    * ``stats``: float64 ``(variables, len(STAT_COLUMNS))``;
    * ``heatmaps``: the flattened heatmaps of the variables that have one,
      concatenated (``layout.grid`` gives each one's shape);
    * ``histograms``: float64 ``(variables, 2)`` bounds and int32
      ``(variables, buckets)`` counts;
    * ``gates``: ``{index: (table, heatmap)}`` for fused recurrent weights.

    ``argument_types`` names the kinds of the arguments (plain or
    distributed variables, tensors), which a trace depends on.
    """
    key = (tuple(layout.key() for layout in layouts), bool(training),
           bool(record), tuple(argument_types))
    function = _FUNCTIONS.get(key)
    if function is not None:
        return function

    def window_end(gradients, states, window_scalars):
        outs = [_window_end(layout, gradient, state, scalars, training,
                            record)
                for layout, gradient, state, scalars in zip(
                    layouts, gradients, states, window_scalars)]
        if not record:
            return tf.stack(outs) if outs else tf.constant(True)
        result = {"stats": tf.stack([o["stats"] for o in outs])}
        heatmaps = [tf.reshape(o["heatmap"], [-1]) for o in outs
                    if "heatmap" in o]
        if heatmaps:
            result["heatmaps"] = tf.concat(heatmaps, 0)
        histograms = [o["histogram"] for o in outs if "histogram" in o]
        if histograms:
            result["histogram_bounds"] = tf.stack(
                [tf.stack([low, high]) for low, high, _ in histograms])
            result["histogram_counts"] = tf.stack(
                [counts for _, _, counts in histograms])
        gates = {str(i): (o["gates"],) + ((o["gate_heatmap"],)
                                          if o["gate_heatmap"] is not None
                                          else ())
                 for i, o in enumerate(outs) if "gates" in o}
        if gates:
            result["gates"] = gates
        return result

    function = _FUNCTIONS[key] = tracing.TracedOnce(window_end)
    return function


def histogram_rows(low, high, counts):
    """The histograms plugin's ``(k, 3)`` rows from device bounds and counts.

    Edges are equally spaced from ``low`` to ``high`` (as `np.histogram`); a
    constant variable gets one unit-wide bucket around its value and empty
    ones after it; no finite value gives a ``(0, 3)`` array.
    """
    counts = np.asarray(counts, np.float64)
    bucket_count = counts.shape[0]
    low, high = float(low), float(high)
    if not counts.sum() or not (math.isfinite(low) and math.isfinite(high)):
        return np.zeros((0, 3), dtype=np.float64)
    if low == high:
        return np.array([[low - 0.5, high + 0.5, counts.sum()]] +
                        [[high + 0.5, high + 0.5, 0.0]] * (bucket_count - 1))
    edges = np.linspace(low, high, bucket_count + 1)
    return np.stack([edges[:-1], edges[1:], counts], axis=1)
