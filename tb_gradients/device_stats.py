"""The per-variable reductions of docs/STATISTICS.md, computed on the device.

At a window's end (today: an epoch) one compiled call reads every window
gradient ``G`` where it lives, updates the accumulated state in place and
returns only reductions: per variable a vector of sums and maxima
(``REDUCTIONS``), the pooled heatmap channels (uint8-encoded on the device),
histogram counts and per-gate figures. `window.py` turns the reductions into
the statistics on the host (O(variables) numbers). Nothing of a variable's
size crosses to the host, so the host's work per window does not grow with
the parameter count.

**Groups.** Variables with the same layout (shape, pooling) are stacked and
reduced together along a leading axis, in groups of at most
`GROUP_ELEMENTS` elements: the compiled graph has a few dozen operations per
group instead of per variable, which keeps the one-time tracing short and
the per-window dispatch small for models with hundreds of variables.

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

from tb_gradients import metadata
from tb_gradients import stats
from tb_gradients import tracing

# Per-variable reductions returned by the window end, in order.
REDUCTIONS = stats.REDUCTIONS

# Per-variable scalars summed over the steps of a window (training source):
# the number of steps, Σ_i ‖g_i‖₁ and Σ_i ‖g_i‖₂².
WINDOW_SCALARS = ("steps", "step_l1", "step_sq")

# Grid of the pooled accumulated |G| when heatmaps are off: it still serves
# `dissolving_max`.
DEFAULT_POOL_CELLS = 128 * 128

# Largest number of elements stacked into one group (bounds the window
# end's temporaries); a larger variable is a group of its own, unstacked.
GROUP_ELEMENTS = 1 << 21


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
        self.exact = self.block == (1, 1)
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

    @property
    def cells(self):
        return self.grid[0] * self.grid[1]

    def key(self):
        return (self.shape, self.block, self.heatmap, self.encoding,
                self.buckets, self.gate_count, self.gate_block)


def group_layouts(layouts, limit=GROUP_ELEMENTS):
    """Splits variable indices into groups of equal layout.

    Returns:
      list of lists of indices, in first-appearance order; each group's
      stacked size is at most ``limit`` elements unless a single variable
      is larger. Variables with gates are alone.
    """
    open_groups, groups = {}, []
    for index, layout in enumerate(layouts):
        key = layout.key()
        group = open_groups.get(key)
        if (group is None or layout.gate_count
                or (len(group) + 1) * layout.size > limit):
            group = []
            groups.append(group)
            open_groups[key] = group
        group.append(index)
    return groups


class GroupState:
    """The state carried from window to window for one group."""

    def __init__(self, layout, count, name):
        shape = (count, layout.size)
        self.accumulated = tf.Variable(
            tf.zeros(shape, tf.float32), trainable=False,
            name=f"tb_gradients_{name}_accumulated")
        self.compensation = tf.Variable(
            tf.zeros(shape, tf.bfloat16), trainable=False,
            name=f"tb_gradients_{name}_compensation")
        self.pooled_abs = tf.Variable(
            tf.zeros((count,) + layout.grid, tf.float64), trainable=False,
            name=f"tb_gradients_{name}_pooled_abs")
        self.accumulated_l1 = tf.Variable(
            tf.zeros((count,), tf.float64), trainable=False,
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


def _reduce_axis(values, axis, block, reducer):
    """Reduces consecutive blocks of ``block`` along ``axis`` (last may be
    smaller) with ``reducer`` (`tf.reduce_sum` or `tf.reduce_max`)."""
    length = values.shape[axis]
    if block == 1:
        return values
    whole = length // block * block

    def blocks(part, count):
        shape = values.shape.as_list()
        shape[axis:axis + 1] = [count, -1]
        return reducer(tf.reshape(part, shape), axis=axis + 1)

    if whole == length:
        return blocks(values, length // block)
    begin = [0] * values.shape.rank
    size = [-1] * values.shape.rank
    size[axis] = whole
    head = blocks(tf.slice(values, begin, size), whole // block)
    begin[axis], size[axis] = whole, length - whole
    tail = reducer(tf.slice(values, begin, size), axis=axis, keepdims=True)
    return tf.concat([head, tail], axis)


def pool(values, block, reducer):
    """Pools ``(..., rows, cols)`` over blocks ``(block_rows, block_cols)``."""
    rank = values.shape.rank
    values = _reduce_axis(values, rank - 2, block[0], reducer)
    return _reduce_axis(values, rank - 1, block[1], reducer)


def block_counts(view, block):
    """Number of elements of each pooled block, float64 ``(grid)``."""
    rows, cols = view
    block_rows, block_cols = block
    r = np.diff(np.append(np.arange(0, rows, block_rows), rows))
    c = np.diff(np.append(np.arange(0, cols, block_cols), cols))
    return np.outer(r, c).astype(np.float64)


def encode_log_uint8(values, scale, decades=metadata.HEATMAP_DECADES):
    """Device twin of `stats.decode_log_uint8`'s encoding (float64).

    Code 0 is zero (or anything below ``scale * 10**-decades``), codes
    1..253 are evenly spaced in ``log10`` from ``scale * 10**-decades`` to
    ``scale``, 254 is +Inf, 255 is NaN; ``scale`` broadcasts against
    ``values``.
    """
    values = tf.cast(values, tf.float64)
    scale = tf.cast(scale, tf.float64)
    levels = float(metadata.HEATMAP_CODE_LEVELS)
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
        float(metadata.HEATMAP_CODE_INF), tf.float64), codes)
    codes = tf.where(tf.math.is_nan(values), tf.constant(
        float(metadata.HEATMAP_CODE_NAN), tf.float64), codes)
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
    rows = values.shape[0]
    width = high - low
    scale = tf.where(width > 0, buckets / width, tf.zeros_like(width))
    index = tf.cast((values - low[:, None]) * scale[:, None], tf.int32)
    index = tf.clip_by_value(index, 0, buckets) + (
        tf.range(rows, dtype=tf.int32) * (buckets + 1))[:, None]
    counts = tf.math.bincount(tf.reshape(index, [-1]),
                              minlength=rows * (buckets + 1),
                              maxlength=rows * (buckets + 1), dtype=tf.int32)
    counts = tf.reshape(counts, [rows, buckets + 1])
    return tf.concat([counts[:, :buckets - 1],
                      counts[:, buckets - 1:buckets] + counts[:, buckets:]],
                     1)


def _l1(values):
    return tf.reduce_sum(tf.abs(values), axis=-1)


def _squares(values):
    return tf.reduce_sum(tf.square(values), axis=-1)


def _group_window_end(layout, gradients, state, record):
    """Updates a group's state with its ``G`` and returns its reductions.

    Args:
      layout: the group's `VariableLayout`.
      gradients: the group's window gradients (tensors or variables).
      state: the group's `GroupState` variables.
      record: False: only update the state.

    Returns:
      dict with ``reductions`` float64 ``(count, len(REDUCTIONS))`` and, as
      the layout asks, ``channels`` float64 ``(count, 4, cells)`` with their
      ``scales`` ``(count, 4)``, ``histograms`` int32 ``(count, buckets)``,
      ``gates`` / ``gate_heatmap``.
    """
    accumulated, compensation, pooled_abs, accumulated_l1 = state
    count, size = len(gradients), layout.size
    work = tf.float64 if layout.exact else tf.float32
    flat = [tf.reshape(tf.cast(tf.convert_to_tensor(g), tf.float32), [1, -1])
            for g in gradients]
    g32 = flat[0] if count == 1 else tf.concat(flat, 0)
    new_c, new_compensation = kahan_add(accumulated.read_value(),
                                        compensation.read_value(), g32)
    g = tf.cast(g32, work)
    c = new_c
    if layout.exact:
        c = tf.cast(new_c, work) - tf.cast(new_compensation, work)
    abs_g = tf.abs(g)
    abs_c = tf.abs(c)
    l1 = tf.cast(tf.reduce_sum(abs_g, axis=1), tf.float64)
    finite_l1 = tf.where(tf.math.is_finite(l1), l1, tf.zeros_like(l1))
    new_l1 = accumulated_l1.read_value() + finite_l1
    view = (count,) + layout.view
    block_abs = tf.cast(pool(tf.reshape(abs_g, view), layout.block,
                             tf.reduce_sum), tf.float64)
    new_pooled_abs = pooled_abs.read_value() + block_abs
    updates = [accumulated.assign(new_c, read_value=False),
               compensation.assign(new_compensation, read_value=False),
               pooled_abs.assign(new_pooled_abs, read_value=False),
               accumulated_l1.assign(new_l1, read_value=False)]
    if not record:
        with tf.control_dependencies(updates):
            return {"done": tf.constant(True)}

    counts = tf.constant(block_counts(layout.view, layout.block))
    block_c = tf.cast(pool(tf.reshape(abs_c, view), layout.block,
                           tf.reduce_sum), tf.float64)
    dissolving_sum = new_pooled_abs - block_c
    dissolving_mean = tf.where(dissolving_sum < 0,
                               tf.zeros_like(dissolving_sum),
                               dissolving_sum) / counts
    finite_dissolving = tf.where(tf.math.is_finite(dissolving_mean),
                                 dissolving_mean,
                                 tf.fill(tf.shape(dissolving_mean),
                                         tf.constant(-np.inf, tf.float64)))
    dissolving_max = tf.reduce_max(tf.reshape(finite_dissolving,
                                              [count, -1]), axis=1)
    index = tf.argmax(abs_g, axis=1, output_type=tf.int32)
    max_abs = tf.gather(abs_g, index, axis=1, batch_dims=1)
    low = tf.reduce_min(g, axis=1)
    high = tf.reduce_max(g, axis=1)
    columns = {
        "sum": tf.reduce_sum(g, axis=1), "l1": l1, "sq": _squares(g),
        "max_abs": max_abs, "max_abs_index": index, "min": low,
        "max": high, "accumulated_l1": tf.reduce_sum(abs_c, axis=1),
        "accumulated_sq": _squares(c),
        "accumulated_max_abs": tf.reduce_max(abs_c, axis=1),
        "accumulated_abs_l1": new_l1, "dissolving_max": dissolving_max,
        "nan_count": tf.zeros([count], tf.float64),
        "inf_count": tf.zeros([count], tf.float64),
    }
    out = {"reductions": tf.stack([tf.cast(columns[name], tf.float64)
                                   for name in REDUCTIONS], axis=1)}
    if layout.heatmap:
        out["channels"], out["scales"] = _channels(
            layout, tf.reshape(abs_g, view), block_abs, block_c,
            dissolving_mean, [columns[name] for name in
                              metadata.HEATMAP_CHANNEL_SCALES])
    if layout.buckets:
        out["histograms"] = histogram_counts(g, low, high, layout.buckets)
    if layout.gate_count:
        out["gates"], gate_heatmap = _gate_figures(
            layout, tf.reshape(g, layout.shape))
        if gate_heatmap is not None:
            out["gate_heatmap"] = gate_heatmap
    with tf.control_dependencies(updates):
        return tf.nest.map_structure(tf.identity, out)


def _channels(layout, abs_view, block_abs, block_c, dissolving_mean,
              scales):
    """The four heatmap channels ``(count, 4, cells)`` and their scales."""
    count = abs_view.shape[0]
    counts = tf.constant(block_counts(layout.view, layout.block))
    block_max = tf.cast(pool(abs_view, layout.block, tf.reduce_max),
                        tf.float64)
    # a max does not always keep NaN; a block whose sum is NaN does
    block_max = tf.where(tf.math.is_nan(block_abs), block_abs, block_max)
    channels = tf.stack([block_abs / counts, block_max, block_c / counts,
                         dissolving_mean], axis=1)
    scales = tf.stack([tf.cast(tf.reshape(s, [count]), tf.float64)
                       for s in scales], axis=1)
    return tf.reshape(channels, [count, 4, -1]), scales


def _gate_figures(layout, gradient):
    """Per gate: ``(l2, mean|g|, max|g|)`` and the pooled mean |g|."""
    rows, table = [], []
    for part in tf.split(gradient, layout.gate_count, axis=-1):
        finite = tf.abs(part)
        finite = tf.where(tf.math.is_finite(finite), finite,
                          tf.zeros_like(finite))
        table.append(tf.stack([tf.sqrt(tf.reduce_sum(tf.square(finite))),
                               tf.reduce_mean(finite),
                               tf.reduce_max(finite)]))
        if layout.gate_cells:
            view = tf.reshape(tf.abs(part), layout.gate_view)
            pooled = pool(view, layout.gate_block, tf.reduce_sum)
            rows.append(tf.cast(pooled, tf.float64) / block_counts(
                layout.gate_view, layout.gate_block))
    heatmap = tf.cast(tf.stack(rows), tf.float32) if rows else None
    return tf.cast(tf.stack(table), tf.float64), heatmap


_FUNCTIONS = {}


def window_end_function(layouts, groups, record, argument_types=()):
    """One compiled call doing the window end of every variable of a model.

    Called as ``fn(gradients, states, window_scalars)``: ``gradients`` has
    one entry per variable (tensors or the window-sum variables), ``states``
    one `GroupState` tuple per group of ``groups`` (from `group_layouts`),
    ``window_scalars`` the per-variable ``WINDOW_SCALARS`` variables of the
    training source (empty for the probe), returned stacked. The
    trace is shared by every call with the same layouts and argument kinds
    (``argument_types``: plain or distributed variables, tensors): later
    `fit` calls, new callbacks on the same model and other models of the
    same architecture reuse it. Returns, concatenated in group order:

    * ``reductions``: float64 ``(variables, len(REDUCTIONS))``;
    * ``heatmaps``: the encoded heatmaps of the variables that have one,
      flattened and concatenated, uint8 or float32;
    * ``histograms``: int32 ``(variables, buckets)``;
    * ``gates``: ``{group index: (table, heatmap)}``.
    """
    key = (tuple(layout.key() for layout in layouts),
           tuple(tuple(g) for g in groups), bool(record),
           tuple(argument_types))
    function = _FUNCTIONS.get(key)
    if function is None:
        function = _FUNCTIONS[key] = tracing.TracedOnce(
            lambda gradients, states, window_scalars: _window_end(
                layouts, groups, record, gradients, states, window_scalars))
    return function


def _window_end(layouts, groups, record, gradients, states, window_scalars):
    # read before the state updates of the groups (nothing else orders them)
    scalars = [tf.identity(tf.convert_to_tensor(s)) for s in window_scalars]
    with tf.control_dependencies(scalars):
        outs = [_group_window_end(layouts[group[0]],
                                  [gradients[i] for i in group], state,
                                  record)
                for group, state in zip(groups, states)]
    if not record:
        return tf.stack([o["done"] for o in outs])
    result = {"reductions": tf.concat([o["reductions"] for o in outs], 0)}
    if scalars:
        result["window_scalars"] = tf.stack(scalars)
    heatmaps = [(o["channels"], o["scales"]) for o in outs if "channels" in o]
    if heatmaps:
        values = tf.concat([tf.reshape(c, [-1]) for c, _ in heatmaps], 0)
        if layouts[0].encoding == "float32":
            result["heatmaps"] = tf.cast(values, tf.float32)
        else:
            scales = tf.concat([tf.reshape(tf.broadcast_to(
                s[:, :, None], tf.shape(c)), [-1]) for c, s in heatmaps], 0)
            result["heatmaps"] = encode_log_uint8(values, scales)
    histograms = [o["histograms"] for o in outs if "histograms" in o]
    if histograms:
        result["histograms"] = tf.concat(histograms, 0)
    gates = {str(i): (o["gates"],) + ((o["gate_heatmap"],)
                                      if "gate_heatmap" in o else ())
             for i, o in enumerate(outs) if "gates" in o}
    if gates:
        result["gates"] = gates
    return result


def _masked_reductions(layout, gradient, state, position):
    """One variable's reductions over finite elements, after the main pass.

    Used for a variable whose ``G`` or ``C`` holds a non-finite element. The
    state is already updated; this fixes the variable's ``accumulated_l1``
    (the main pass added 0 for a non-finite ‖G‖₁) and returns its
    reductions, histogram and heatmap as the main pass would for finite
    data, with the scales of the finite elements.
    """
    accumulated, compensation, pooled_abs, accumulated_l1 = state
    g = tf.reshape(tf.cast(tf.convert_to_tensor(gradient), tf.float64), [-1])
    c = tf.cast(accumulated[position], tf.float64) - tf.cast(
        compensation[position], tf.float64)
    finite = tf.math.is_finite(g)
    zeroed = tf.where(finite, g, tf.zeros_like(g))
    abs_g = tf.abs(zeroed)
    raw_abs_c = tf.abs(c)
    abs_c = tf.where(tf.math.is_finite(raw_abs_c), raw_abs_c,
                     tf.zeros_like(raw_abs_c))
    l1 = tf.reduce_sum(abs_g)
    new_l1 = accumulated_l1[position] + l1
    update = accumulated_l1.scatter_nd_update([[position]], [new_l1])
    values = tf.boolean_mask(g, finite)
    low = tf.reduce_min(values)
    high = tf.reduce_max(values)
    index = tf.argmax(abs_g, output_type=tf.int32)
    view = (1,) + layout.view
    counts = tf.constant(block_counts(layout.view, layout.block))
    block_abs = pool(tf.reshape(tf.abs(g), view), layout.block,
                     tf.reduce_sum)
    block_c = pool(tf.reshape(raw_abs_c, view), layout.block, tf.reduce_sum)
    dissolving_sum = pooled_abs[position][None] - block_c
    dissolving_mean = tf.where(dissolving_sum < 0,
                               tf.zeros_like(dissolving_sum),
                               dissolving_sum) / counts
    finite_dissolving = tf.boolean_mask(
        dissolving_mean, tf.math.is_finite(dissolving_mean))
    columns = {
        "sum": tf.reduce_sum(zeroed), "l1": l1, "sq": _squares(zeroed),
        "max_abs": tf.gather(abs_g, index), "max_abs_index": index,
        "min": low, "max": high, "accumulated_l1": tf.reduce_sum(abs_c),
        "accumulated_sq": _squares(abs_c),
        "accumulated_max_abs": tf.reduce_max(abs_c),
        "accumulated_abs_l1": new_l1,
        "dissolving_max": tf.reduce_max(tf.concat(
            [finite_dissolving, tf.constant([-np.inf], tf.float64)], 0)),
        "nan_count": tf.math.count_nonzero(tf.math.is_nan(g)),
        "inf_count": tf.math.count_nonzero(tf.math.is_inf(g)),
    }
    out = {"reductions": tf.stack([tf.cast(columns[name], tf.float64)
                                   for name in REDUCTIONS])}
    if layout.buckets:
        out["histogram"] = tf.cond(
            tf.size(values) > 0,
            lambda: histogram_counts(values[None, :], low[None],
                                     high[None], layout.buckets)[0],
            lambda: tf.zeros([layout.buckets], tf.int32))
    if layout.heatmap:
        channels, scales = _channels(
            layout, tf.reshape(tf.abs(g), view), block_abs, block_c,
            dissolving_mean, [columns[name] for name in
                              metadata.HEATMAP_CHANNEL_SCALES])
        if layout.encoding == "float32":
            out["heatmap"] = tf.cast(channels[0], tf.float32)
        else:
            out["heatmap"] = encode_log_uint8(channels[0], scales[0][:, None])
    with tf.control_dependencies([update]):
        return tf.nest.map_structure(tf.identity, out)


def masked_reductions_function(layout, argument_types=()):
    """The non-finite path of one layout (traced only when first needed).

    Called as ``fn(gradient, state, position)`` with the variable's group
    state and its row in it.
    """
    key = ("masked", layout.key(), tuple(argument_types))
    function = _FUNCTIONS.get(key)
    if function is None:
        function = _FUNCTIONS[key] = tracing.TracedOnce(
            lambda *args: _masked_reductions(layout, *args))
    return function


def histogram_rows(low, high, counts):
    """The histograms plugin's ``(k, 3)`` rows from bounds and counts.

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
