"""The window end in TensorFlow ops: the per-variable reductions of
docs/STATISTICS.md, computed on the device.

At a window's end (today: an epoch) one compiled call reads every window
gradient ``G`` where it lives, updates the accumulated state in place and
returns only reductions: per variable a vector of sums and maxima
(``REDUCTIONS``), the pooled heatmap channels (uint8-encoded on the device),
histogram counts and per-gate figures. `window.source` turns the reductions
into the statistics on the host (O(variables) numbers). Nothing of a variable's
size crosses to the host, so the host's work per window does not grow with
the parameter count.

**Groups.** Variables of the same shape are stacked and reduced together
along a leading axis, in groups of at most `GROUP_ELEMENTS` elements
(`window.layout.group_by_shape`; the training capture keeps their window
sums stacked that way). One compiled step with unknown shapes serves every group of
every model: it is traced once per process, not per model or layout, and a
model with hundreds of variables costs a few dozen calls per window.

**State** kept per group (`GroupState`), with what it is for:

* ``accumulated`` ``C = Σ_k G_k``, float32, full size: every statistic of the
  accumulated gradient is elementwise in ``C``;
* ``compensation``, bfloat16, full size: the rounding error of the last
  ``C += G`` (Kahan summation), which keeps ``C`` accurate to float32 over
  thousands of windows for 2 bytes per parameter;
* ``pooled_abs``, float64, one value per heatmap block: the block sums of
  ``A = Σ_k |G_k|``. ``A`` only ever enters block means (the dissolving
  heatmap, ``dissolving_max``) and its total (``accumulated_norm``), and
  block sums are linear, so the full-size ``A`` is never needed;
* ``accumulated_l1``, float64 per variable: ``Σ_k ‖G_k‖₁`` (finite part).

Variables that fit the pooled grid unpooled (at most ``max_cells``
elements: biases, normalisation scales, small kernels) are worked on in
float64, with ``C`` read back with its compensation, so their figures are as
exact as float64 host maths, at a cost independent of the model's size.

**Non-finite windows.** The main pass does not mask: a variable whose
``‖G‖₁`` comes out non-finite is flagged, and `masked_reductions` recomputes
its reductions over the finite elements only (a rare, separate call).
"""

import math

import numpy as np
import tensorflow as tf

from tb_gradients import tracing
from tb_gradients.format import heatmap as heatmap_format
from tb_gradients.window import kernels
from tb_gradients.window import statistics

# Per-variable reductions returned by the window end, in order.
REDUCTIONS = statistics.REDUCTIONS

# Per-variable scalars summed over the steps of a window (training source):
# the number of steps, Σ_i ‖g_i‖₁ and Σ_i ‖g_i‖₂².
WINDOW_SCALARS = ("steps", "step_l1", "step_sq")


def new_state(layout, count):
    """Zero state arrays for ``count`` variables of ``layout`` (on the
    current device)."""
    shapes = kernels.state_shapes(layout, count)
    return kernels.GroupState(
        (tf.zeros(shapes["accumulated"], tf.float32),
         tf.zeros(shapes["compensation"], tf.bfloat16),
         tf.zeros(shapes["pooled_abs"], tf.float64),
         tf.zeros(shapes["accumulated_l1"], tf.float64)), shapes)


# -- pure pieces (tensors in, tensors out) -----------------------------------


def kahan_add(total, compensation, value):
    """``total + value`` with Kahan compensation; returns both new tensors.

    ``compensation`` is the part of earlier additions that ``total`` could
    not hold (stored rounded to bfloat16); it is fed back into the next
    addition. Where ``value`` or ``total`` is not finite the compensation
    becomes NaN; `finite_compensation` repairs it (the window end does so
    for the rare variables that hold NaN or Inf).
    """
    corrected = value - tf.cast(compensation, tf.float32)
    new_total = total + corrected
    lost = (new_total - total) - corrected
    return new_total, tf.cast(lost, tf.bfloat16)


def finite_compensation(total, compensation):
    """Zero compensation where ``total`` is not finite: NaN stays NaN and
    Inf stays Inf in ``C``."""
    return tf.where(tf.math.is_finite(total), compensation,
                    tf.zeros_like(compensation))


def pool(values, geometry, reducer):
    """Pools stacked views ``(count * rows, cols)`` into blocks.

    Args:
      values: ``(count * rows, cols)``: ``count`` views one under another.
      geometry: int32 ``[rows, cols, block_rows, block_cols]`` (tensors, so
        one trace serves every layout).
      reducer: `tf.math.segment_sum` or `tf.math.segment_max`.

    Returns:
      ``(count * grid_rows, grid_cols)``; the last block of each axis may be
      smaller.
    """
    rows, cols, block_rows, block_cols = (geometry[0], geometry[1],
                                          geometry[2], geometry[3])
    grid_rows = (rows + block_rows - 1) // block_rows
    position = tf.range(tf.shape(values)[0])
    row_ids = (position // rows) * grid_rows + (position % rows) // block_rows
    pooled = reducer(values, row_ids)
    column_ids = tf.range(cols) // block_cols
    return tf.transpose(reducer(tf.transpose(pooled), column_ids))


def block_counts(geometry):
    """Number of elements of each pooled block, float64 ``(grid)``."""
    rows, cols, block_rows, block_cols = (geometry[0], geometry[1],
                                          geometry[2], geometry[3])
    per_row = tf.math.segment_sum(tf.ones([rows], tf.float64),
                                  tf.range(rows) // block_rows)
    per_column = tf.math.segment_sum(tf.ones([cols], tf.float64),
                                     tf.range(cols) // block_cols)
    return per_row[:, None] * per_column[None, :]


def encode_log_uint8(values, scale, decades=heatmap_format.HEATMAP_DECADES):
    """Device twin of `format.heatmap.decode_log_uint8`'s encoding (float64).

    Code 0 is zero (or anything below ``scale * 10**-decades``), codes
    1..253 are evenly spaced in ``log10`` from ``scale * 10**-decades`` to
    ``scale``, 254 is +Inf, 255 is NaN; ``scale`` broadcasts against
    ``values``.
    """
    values = tf.cast(values, tf.float64)
    scale = tf.cast(scale, tf.float64)
    levels = float(heatmap_format.HEATMAP_CODE_LEVELS)
    usable = tf.logical_and(tf.math.is_finite(scale), scale > 0)
    safe_scale = tf.where(usable, scale, tf.ones_like(scale))
    ratio = tf.math.divide_no_nan(values, safe_scale)
    position = (tf.math.log(ratio) / math.log(10.0) + decades) / decades
    position = tf.round(position * (levels - 1)) + 1
    visible = tf.logical_and(tf.math.is_finite(position), position >= 1)
    visible = tf.logical_and(visible, usable)
    codes = tf.where(visible, tf.clip_by_value(position, 1, levels),
                     tf.zeros_like(position))
    codes = tf.where(tf.math.is_inf(values), tf.constant(
        float(heatmap_format.HEATMAP_CODE_INF), tf.float64), codes)
    codes = tf.where(tf.math.is_nan(values), tf.constant(
        float(heatmap_format.HEATMAP_CODE_NAN), tf.float64), codes)
    return tf.cast(codes, tf.uint8)


def histogram_counts(values, low, high, buckets):
    """Equal-width bucket counts of each row between its ``low`` and ``high``.

    Args:
      values: ``(rows, n)`` finite values.
      low, high: ``(rows,)`` bounds (the rows' min and max).
      buckets: number of buckets.

    Returns:
      int32 ``(rows, buckets)``; a row's maximum falls in its last bucket,
      as with `np.histogram`.
    """
    width = high - low
    scale = tf.where(width > 0, tf.cast(buckets, width.dtype) / width,
                     tf.zeros_like(width))

    def positions(values, low, scale):
        index = tf.cast((values - low) * scale, tf.int32)
        # Finite values land in [0, buckets] (the maximum on ``buckets``);
        # the mask only keeps NaN (cast to a negative integer) countable:
        # such rows are recomputed by the masked path.
        return tf.bitwise.bitwise_and(index, 0x7FFFFFFF)

    def one_row():
        # scalar operands: Eigen's fast path, not a broadcast
        index = positions(values[0], low[0], scale[0])
        return tf.math.bincount(index, minlength=buckets + 1,
                                maxlength=buckets + 1, dtype=tf.int32)[None]

    def stacked():
        index = positions(values, low[:, None], scale[:, None])
        return tf.math.bincount(index, minlength=buckets + 1,
                                maxlength=buckets + 1, dtype=tf.int32,
                                axis=-1)

    counts = tf.cond(tf.equal(tf.shape(values)[0], 1), one_row, stacked)
    return tf.concat([counts[:, :buckets - 1],
                      counts[:, buckets - 1:buckets] + counts[:, buckets:]],
                     1)


def _squares(values):
    """Row sums of squares, in one pass (no squared temporary)."""
    return tf.square(tf.math.reduce_euclidean_norm(values, axis=-1))


def zero_units(g, units):
    """Per row of ``g`` ``(count, size)``: how many of its ``units`` output
    units (the last axis of the variable) have a gradient that is exactly 0
    in every element. NaN is not 0: a unit with NaN elements is not dead."""
    count = tf.shape(g)[0]
    by_unit = tf.reshape(g, [count, -1, units])
    return tf.reduce_sum(tf.cast(tf.reduce_all(tf.equal(by_unit, 0), axis=1),
                                 tf.float64), axis=1)


def _stack_columns(columns, names):
    """``(count, len(names))`` float64 from per-variable column tensors."""
    return tf.stack([tf.cast(columns[name], tf.float64) for name in names],
                    axis=1)


def _dissolving_mean(pooled_abs, block_c, counts):
    dissolving = pooled_abs - block_c
    return tf.where(dissolving < 0, tf.zeros_like(dissolving),
                    dissolving) / counts


def _finite_max(values):
    """Max of each row over finite entries; -inf for none."""
    return tf.reduce_max(tf.where(
        tf.math.is_finite(values), values,
        tf.fill(tf.shape(values), tf.constant(-np.inf, values.dtype))),
                         axis=-1)


def _channels(abs_g, block_abs, block_c, dissolving_mean, counts, scales,
              geometry, encoding):
    """The four heatmap channels ``(count, 4, cells)``, encoded."""
    count = tf.shape(block_abs)[0]
    view = tf.reshape(abs_g, [-1, geometry[1]])
    block_max = tf.reshape(tf.cast(pool(view, geometry,
                                        tf.math.segment_max), tf.float64),
                           [count, -1])
    # a max does not always keep NaN; a block whose sum is NaN does
    block_max = tf.where(tf.math.is_nan(block_abs), block_abs, block_max)
    channels = tf.stack([block_abs / counts, block_max, block_c / counts,
                         dissolving_mean], axis=1)
    if encoding == "float32":
        return tf.cast(channels, tf.float32)
    return encode_log_uint8(channels, scales[:, :, None])


def _group_step(exact, heatmap, encoding, record, gradient, accumulated,
                compensation, pooled_abs, accumulated_l1, geometry):
    """Window end of one group of stacked variables of equal layout.

    A pure function, traced once per variant (``exact``, ``heatmap``,
    ``encoding``, ``record``) with unknown shapes, so that every group of
    every model shares the trace; the caller assigns the new state.

    Args:
      gradient: float32 ``(count, size)`` window gradients ``G``.
      accumulated, compensation: ``C`` and its compensation, ``(count,
        size)``.
      pooled_abs: float64 ``(count, cells)`` block sums of ``A``.
      accumulated_l1: float64 ``(count,)`` ``Σ_k ‖G_k‖₁``.
      geometry: int32 ``[rows, cols, block_rows, block_cols, buckets]``.

    Returns:
      ``(new state (4 tensors), outputs)``; outputs (with ``record``):
      ``reductions`` float64 ``(count, len(REDUCTIONS))``, ``heatmap``
      ``(count, 4, cells)`` (with ``heatmap``), ``histogram`` int32
      ``(count, buckets)`` (when ``geometry[4] > 0``).
    """
    geometry = tf.unstack(geometry, num=5)  # indexed many times below
    work = tf.float64 if exact else tf.float32
    new_c, new_compensation = kahan_add(accumulated, compensation, gradient)
    g = tf.cast(gradient, work)
    c = new_c
    if exact:
        c = tf.cast(new_c, work) - tf.cast(new_compensation, work)
    count = tf.shape(g)[0]
    abs_g = tf.abs(g)
    view = tf.reshape(abs_g, [-1, geometry[1]])
    block_abs = tf.reshape(tf.cast(pool(view, geometry, tf.math.segment_sum),
                                   tf.float64), [count, -1])
    # ‖G‖₁ as the float64 sum of the block sums: one pass less, and closer
    # to the exact sum than a float32 reduction
    l1 = tf.reduce_sum(block_abs, axis=1)
    new_l1 = accumulated_l1 + tf.where(tf.math.is_finite(l1), l1,
                                       tf.zeros_like(l1))
    new_pooled_abs = pooled_abs + block_abs
    state = (new_c, new_compensation, new_pooled_abs, new_l1)
    if not record:
        return state, {}
    counts = tf.reshape(block_counts(geometry), [1, -1])
    abs_c = tf.abs(c)
    block_c = tf.reshape(tf.cast(pool(tf.reshape(abs_c, [-1, geometry[1]]),
                                      geometry, tf.math.segment_sum),
                                 tf.float64), [count, -1])
    dissolving_mean = _dissolving_mean(new_pooled_abs, block_c, counts)
    index = tf.argmax(abs_g, axis=1, output_type=tf.int32)
    low = tf.reduce_min(g, axis=1)
    high = tf.reduce_max(g, axis=1)
    columns = {
        "sum": tf.reduce_sum(g, axis=1), "l1": l1, "sq": _squares(g),
        "max_abs": tf.gather(abs_g, index, axis=1, batch_dims=1),
        "max_abs_index": index, "min": low, "max": high,
        "accumulated_l1": tf.reduce_sum(block_c, axis=1),
        "accumulated_sq": _squares(c),
        "accumulated_max_abs": tf.reduce_max(abs_c, axis=1),
        "accumulated_abs_l1": new_l1,
        "dissolving_max": _finite_max(dissolving_mean),
        "nan_count": tf.zeros([count], tf.float64),
        "inf_count": tf.zeros([count], tf.float64),
        "zero_units": zero_units(g, geometry[1]),
    }
    out = {"reductions": _stack_columns(columns, REDUCTIONS)}
    if heatmap:
        scales = _stack_columns(columns, heatmap_format.HEATMAP_CHANNEL_SCALES)
        out["heatmap"] = _channels(abs_g, block_abs, block_c,
                                   dissolving_mean, counts, scales,
                                   geometry, encoding)
    out["histogram"] = tf.cond(
        geometry[4] > 0,
        lambda: histogram_counts(g, low, high, geometry[4]),
        lambda: tf.zeros([count, 0], tf.int32))
    return state, out


def _masked_step(heatmap, encoding, gradient, accumulated, compensation,
                 pooled_abs, accumulated_l1, geometry):
    """A group's reductions over its finite elements, after the main step,
    for a group where some variable's ``G`` or ``C`` holds NaN or Inf
    (every row is reduced again; the host keeps the flagged rows').

    Args: as `_group_step`, with the state already updated by the main
    step except ``accumulated_l1``, to which this adds the finite part of
    ``‖G‖₁``.

    Returns:
      ``(new accumulated_l1, repaired compensation, outputs)``, outputs as
      `_group_step`'s.
    """
    geometry = tf.unstack(geometry, num=5)
    g = tf.cast(gradient, tf.float64)
    c = tf.cast(accumulated, tf.float64) - tf.cast(compensation, tf.float64)
    finite = tf.math.is_finite(g)
    zeroed = tf.where(finite, g, tf.zeros_like(g))
    abs_g = tf.abs(zeroed)
    raw_abs_c = tf.abs(c)
    abs_c = tf.where(tf.math.is_finite(raw_abs_c), raw_abs_c,
                     tf.zeros_like(raw_abs_c))
    l1 = tf.reduce_sum(abs_g, axis=1)
    new_l1 = accumulated_l1 + l1
    inf = tf.constant(math.inf, tf.float64)
    low = tf.reduce_min(tf.where(finite, g, inf), axis=1)
    high = tf.reduce_max(tf.where(finite, g, -inf), axis=1)
    finite_count = tf.math.count_nonzero(finite, axis=1, dtype=tf.int32)
    index = tf.argmax(abs_g, axis=1, output_type=tf.int32)
    counts = tf.reshape(block_counts(geometry), [1, -1])
    raw_abs_g = tf.abs(g)
    block_abs = tf.reshape(pool(tf.reshape(raw_abs_g, [-1, geometry[1]]),
                                geometry, tf.math.segment_sum),
                           [tf.shape(g)[0], -1])
    block_c = tf.reshape(pool(tf.reshape(raw_abs_c, [-1, geometry[1]]),
                              geometry, tf.math.segment_sum),
                         [tf.shape(g)[0], -1])
    dissolving_mean = _dissolving_mean(pooled_abs, block_c, counts)
    columns = {
        "sum": tf.reduce_sum(zeroed, axis=1), "l1": l1,
        "sq": _squares(zeroed),
        "max_abs": tf.gather(abs_g, index, axis=1, batch_dims=1),
        "max_abs_index": index, "min": low, "max": high,
        "accumulated_l1": tf.reduce_sum(abs_c, axis=1),
        "accumulated_sq": _squares(abs_c),
        "accumulated_max_abs": tf.reduce_max(abs_c, axis=1),
        "accumulated_abs_l1": new_l1,
        "dissolving_max": _finite_max(dissolving_mean),
        "nan_count": tf.math.count_nonzero(tf.math.is_nan(g), axis=1),
        "inf_count": tf.math.count_nonzero(tf.math.is_inf(g), axis=1),
        "zero_units": zero_units(g, geometry[1]),
    }
    out = {"reductions": _stack_columns(columns, REDUCTIONS)}
    if heatmap:
        scales = _stack_columns(columns, heatmap_format.HEATMAP_CHANNEL_SCALES)
        out["heatmap"] = _channels(raw_abs_g, block_abs, block_c,
                                   dissolving_mean, counts, scales,
                                   geometry, encoding)
    out["histogram"] = tf.cond(
        geometry[4] > 0,
        lambda: _finite_histogram(g, finite, finite_count, low, high,
                                  geometry[4]),
        lambda: tf.zeros([tf.shape(g)[0], 0], tf.int32))
    return new_l1, finite_compensation(accumulated, compensation), out


def _finite_histogram(g, finite, finite_count, low, high, buckets):
    """`histogram_counts` of each row's finite elements: the others are
    put at the row's ``low`` (its first bucket) and taken out of that
    bucket's count; a row without finite elements counts nothing."""
    usable = finite_count > 0
    low = tf.where(usable, low, tf.zeros_like(low))
    high = tf.where(usable, high, tf.zeros_like(high))
    counts = histogram_counts(tf.where(finite, g, low[:, None]), low, high,
                              buckets)
    others = tf.shape(g)[1] - finite_count
    counts = counts - tf.pad(others[:, None], [[0, 0], [0, buckets - 1]])
    return tf.where(usable[:, None], counts, tf.zeros_like(counts))


def _gate_step(gradient, gate_count, geometry):
    """Per gate of a fused recurrent weight: ``(l2, mean|g|, max|g|)`` and
    the pooled mean |g| (``geometry`` of one gate's view, 0 cells: none).

    Args:
      gradient: ``(rows, gates * units)``: the weight's 2-D view.
    """
    rows = tf.shape(gradient)[0]
    gates = tf.transpose(tf.reshape(tf.abs(tf.cast(gradient, tf.float64)),
                                    [rows, gate_count, -1]), [1, 0, 2])
    finite = tf.where(tf.math.is_finite(gates), gates, tf.zeros_like(gates))
    table = tf.stack([tf.sqrt(tf.reduce_sum(tf.square(finite), axis=[1, 2])),
                      tf.reduce_mean(finite, axis=[1, 2]),
                      tf.reduce_max(finite, axis=[1, 2])], axis=1)
    pooled = pool(tf.reshape(gates, [-1, geometry[1]]), geometry,
                  tf.math.segment_sum)
    heatmap = tf.reshape(pooled, [gate_count, -1]) / tf.reshape(
        block_counts(geometry), [1, -1])
    return table, tf.cast(heatmap, tf.float32)


_FUNCTIONS = {}


def _traced(key, python_function):
    function = _FUNCTIONS.get(key)
    if function is None:
        function = _FUNCTIONS[key] = tracing.TracedOnce(python_function,
                                                        relax_shapes=True)
    return function


def group_step_function(exact, heatmap, encoding, record):
    """`_group_step` of one variant, compiled once for every layout."""
    return _traced(("group", exact, heatmap, encoding, record),
                   lambda *args: _group_step(exact, heatmap, encoding,
                                             record, *args))


def masked_step_function(heatmap, encoding):
    """`_masked_step`, compiled at the first non-finite window."""
    return _traced(("masked", heatmap, encoding),
                   lambda *args: _masked_step(heatmap, encoding, *args))


def gate_step_function():
    return _traced(("gates",), _gate_step)


# Variables of at most this many elements are stacked with the others of
# their shape, device and dtype, and reduced together.
SMALL_WEIGHTS = 1 << 16


def weight_l2s(values):
    """``‖x‖₂`` of each tensor or variable, float64 ``(len(values),)``:
    squares summed in float32 (a tree reduction: about 1e-7 relative
    error), read where each lives. The small ones of one shape, device and
    dtype are stacked and reduced together (a few ops for a thousand
    variables of a deep stack), each large one alone (no copy)."""
    groups = {}
    for n, value in enumerate(values):
        key = (value.device, tuple(value.shape), value.dtype, n) if (
            value.shape.num_elements() > SMALL_WEIGHTS) else (
                value.device, tuple(value.shape), value.dtype)
        groups.setdefault(key, []).append(n)
    parts, order = [], []
    for key, members in groups.items():
        with tf.device(key[0]):
            # stacked as they are (a cast only where not float32): few
            # ops per variable, a short trace
            rows = tf.stack([tf.cast(values[n], tf.float32)
                             for n in members])
            parts.append(tf.cast(tf.reduce_sum(
                tf.square(rows), axis=list(range(1, rows.shape.rank))),
                tf.float64))
        order += members
    if not parts:
        return tf.zeros([0], tf.float64)
    # back to the variables' order
    return tf.sqrt(tf.gather(tf.concat(parts, 0), np.argsort(order)))


class WeightNorms:
    """`weight_l2s` of one fixed list of variables, compiled once for it:
    the variables are captured by the function (read at each call), so a
    call binds no arguments and runs one graph, whatever the number of
    variables (an eager op or a call per variable costs tens of
    microseconds each: most of a window end at a few thousand
    variables)."""

    def __init__(self, variables):
        self.key = tuple(id(v) for v in variables)
        self._function = tf.function(
            lambda: weight_l2s(variables),
            autograph=False).get_concrete_function()

    def __call__(self):
        return self._function()


# -- the Keras variables' TensorFlow side ------------------------------------


def plain_variable(variable):
    """The ``tf.Variable`` behind a Keras variable (a tensor as it is)."""
    return variable.value if hasattr(variable, "path") else variable


def _device_of(variable):
    """Where a Keras variable lives, for colocating its state."""
    device = getattr(plain_variable(variable), "device", None)
    return device if isinstance(device, str) and device else None


class Kernel(kernels.WindowKernel):
    """`kernels.WindowKernel` in TensorFlow ops, where the variables are."""

    def __init__(self):
        super().__init__()
        self._weight_norms = None  # `WeightNorms` of the last variables

    def new_state(self, layout, count, variable):
        with tf.device(_device_of(variable)):
            return new_state(layout, count)

    def saved_arrays(self, state):
        for name, value in zip(state.FIELDS, state.values()):
            if value.dtype == tf.bfloat16:
                value = tf.bitcast(value, tf.uint16)
            yield name, value

    def load_state(self, state, arrays):
        values = []
        for current, array in zip(state.values(), state.checked(arrays)):
            with tf.device(current.device):
                value = tf.constant(array)
                if current.dtype == tf.bfloat16:
                    value = tf.bitcast(value, tf.bfloat16)
            values.append(value)
        state.replace(values)

    def stack(self, gradients):
        rows = [tf.reshape(tf.cast(g, tf.float32), [1, -1])
                for g in gradients]
        return rows[0] if len(rows) == 1 else tf.concat(rows, 0)

    def group_end(self, state, layout, gradients, record, gated=()):
        gradients = tf.convert_to_tensor(gradients)
        with tf.device(state.accumulated.device):
            step = group_step_function(layout.exact, layout.heatmap,
                                       layout.encoding, record)
            new_state, out = step(gradients, *state.values(),
                                  layout.geometry)
            state.replace(new_state)
            if not record:
                return None
            out = dict(out, gates={})
            for row, gate_layout in gated:
                out["gates"][row] = gate_step_function()(
                    tf.reshape(gradients[row], gate_layout.view),
                    tf.constant(gate_layout.gate_count, tf.int32),
                    gate_layout.gate_geometry)
        return out

    def masked_end(self, state, layout, gradients, update_l1):
        gradients = tf.convert_to_tensor(gradients)
        with tf.device(state.accumulated.device):
            step = masked_step_function(layout.heatmap, layout.encoding)
            new_l1, compensation, out = step(gradients, *state.values(),
                                             layout.geometry)
            state.compensation = compensation
            state.accumulated_l1 = tf.where(
                tf.constant(update_l1, tf.bool), new_l1,
                state.accumulated_l1)
        return out

    def weight_norms(self, variables):
        variables = [plain_variable(v) for v in variables]
        norms = self._weight_norms
        if norms is None or norms.key != tuple(id(v) for v in variables):
            norms = self._weight_norms = WeightNorms(variables)
        return norms()

    def _fetch(self, arrays):
        return [array.numpy() for array in arrays]
