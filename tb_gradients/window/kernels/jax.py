"""The window end in JAX ops: jitted functions over the accumulators, on
the device that holds them.

The same figures as `kernels.tensorflow` (docs/STATISTICS.md), computed
without leaving JAX: the JAX capture's window sums are read where they
are, the group's state (`kernels.GroupState`) stays on that device, and
only the reductions, the pooled heatmap channels, the histogram counts
and the gate tables reach the host, in one `to_host` per window.

**Compiling.** Each function is jitted with the group's layout as static
arguments (its view, pooling blocks, histogram buckets, heatmap encoding)
and the stacked shape ``(count, size)``: it is compiled once per distinct
group layout in the process and reused by every window, `fit` and model
with that layout (a model of many equal blocks has few distinct layouts:
its groups are stacked by shape, `window.layout.group_by_shape`).

`Kernel.prepare` compiles every layout of a model in a background thread
as soon as training begins: the compilation overlaps the first window's
steps (on an accelerator the host is otherwise idle), and the first window
end finds its steps compiled.

**Precision.** Keras runs JAX with 64-bit types off; the window end runs
under ``jax.enable_x64`` (a thread-local setting) so that its sums and
its small, exact variables are float64 as on TensorFlow. The full-size
state stays float32 ``C`` with a bfloat16 Kahan compensation, kept as its
uint16 bits (the saved form): XLA:CPU converts to and from bfloat16 one
element at a time, the integer rounding here is vectorised (half the
window end's time on the dense stack of bench/scale.py).

**Pooling.** A variable's matrix view is padded to whole blocks (zeros:
pooled values are non-negative) and reduced over the block axes of a
``(count, grid_rows, block_rows, grid_cols, block_cols)`` reshape; XLA
fuses the padding into the reduction.
"""

import functools
import math
import threading

import jax
import jax.numpy as jnp
import numpy as np

from tb_gradients.format import heatmap as heatmap_format
from tb_gradients.window import kernels
from tb_gradients.window import layout as layouts
from tb_gradients.window import statistics

REDUCTIONS = statistics.REDUCTIONS
F64 = jnp.float64


def _x64(function):
    """Runs ``function`` with 64-bit types on (thread-local)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True):
            return function(*args, **kwargs)

    return wrapper


def local_array(array):
    """One device's copy of a replicated array (the whole value), as the
    chief's window end reads it; the array itself on one device."""
    if len(array.devices()) == 1:
        return array
    return array.addressable_data(0)


def filled(shape, dtype, value=0, device=None):
    """A new array of ``value`` on ``device`` (committed), or uncommitted
    on the default device, without compiling a fill for each new shape:
    XLA:CPU compiles ``jnp.full`` anew per shape (about 30 ms each, seconds
    for a model's state); on a CPU the array is placed from numpy, on an
    accelerator filled there (no host array of its size)."""
    target = device or jax.devices()[0]
    if target.platform != "cpu":
        return jnp.full(shape, value, dtype=dtype, device=device)
    host = np.full(shape, value, dtype=dtype)
    return jax.device_put(host, device)  # no device: uncommitted


# -- pure pieces (arrays in, arrays out; traced inside the steps) -------------


def bfloat16_bits(values):
    """float32 rounded to bfloat16 (to nearest, ties to even), as its
    uint16 bits; NaN stays NaN."""
    bits = jax.lax.bitcast_convert_type(values, jnp.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return jnp.where(jnp.isnan(values), 0x7FC0, rounded).astype(jnp.uint16)


def from_bfloat16_bits(bits):
    """float32 of bfloat16 uint16 bits (exact)."""
    return jax.lax.bitcast_convert_type(bits.astype(jnp.uint32) << 16,
                                        jnp.float32)


def kahan_add(total, compensation, value):
    """``total + value`` with Kahan compensation (`kernels.tensorflow`'s
    twin): returns the new float32 total and the bfloat16 compensation's
    bits."""
    corrected = value - from_bfloat16_bits(compensation)
    new_total = total + corrected
    lost = (new_total - total) - corrected
    return new_total, bfloat16_bits(lost)


def finite_compensation(total, compensation):
    """Zero compensation where ``total`` is not finite."""
    return jnp.where(jnp.isfinite(total), compensation,
                     jnp.zeros_like(compensation))


def grid_of(view, block):
    return -(-view[0] // block[0]), -(-view[1] // block[1])


def pool(values, view, block, reducer):
    """Block reductions of each row's matrix view.

    Args:
      values: ``(count, rows * cols)`` non-negative values.
      view: ``(rows, cols)``; block: ``(block_rows, block_cols)`` (static).
      reducer: `jnp.sum` or `jnp.max`.

    Returns:
      ``(count, grid_rows * grid_cols)``; the last block of each axis may
      be smaller (padded with zeros).
    """
    count = values.shape[0]
    (rows, cols), (block_rows, block_cols) = view, block
    grid_rows, grid_cols = grid_of(view, block)
    x = values.reshape(count, rows, cols)
    padding = (grid_rows * block_rows - rows, grid_cols * block_cols - cols)
    if any(padding):
        x = jnp.pad(x, ((0, 0), (0, padding[0]), (0, padding[1])))
    x = x.reshape(count, grid_rows, block_rows, grid_cols, block_cols)
    return reducer(x, axis=(2, 4)).reshape(count, grid_rows * grid_cols)


def block_counts(view, block):
    """Number of elements of each pooled block, float64 ``(1, cells)``
    (a constant of the layout)."""
    (rows, cols), (block_rows, block_cols) = view, block
    per_row = np.bincount(np.arange(rows) // block_rows).astype(np.float64)
    per_column = np.bincount(np.arange(cols) // block_cols).astype(
        np.float64)
    return (per_row[:, None] * per_column[None, :]).reshape(1, -1)


def encode_log_uint8(values, scale, decades=heatmap_format.HEATMAP_DECADES):
    """`kernels.tensorflow.encode_log_uint8` in JAX (float64)."""
    values = values.astype(F64)
    scale = scale.astype(F64)
    levels = float(heatmap_format.HEATMAP_CODE_LEVELS)
    usable = jnp.isfinite(scale) & (scale > 0)
    ratio = values / jnp.where(usable, scale, 1.0)
    position = (jnp.log(ratio) / math.log(10.0) + decades) / decades
    position = jnp.round(position * (levels - 1)) + 1
    visible = jnp.isfinite(position) & (position >= 1) & usable
    codes = jnp.where(visible, jnp.clip(position, 1, levels), 0.0)
    codes = jnp.where(jnp.isinf(values),
                      float(heatmap_format.HEATMAP_CODE_INF), codes)
    codes = jnp.where(jnp.isnan(values),
                      float(heatmap_format.HEATMAP_CODE_NAN), codes)
    return codes.astype(jnp.uint8)


def histogram_counts(values, low, high, buckets, weights=None):
    """Equal-width bucket counts of each row between its ``low`` and
    ``high`` (a row's maximum in its last bucket, as `np.histogram`).

    Args:
      values: ``(rows, n)``; low, high: ``(rows,)``; buckets: static.
      weights: ``(rows, n)`` 0/1 of the elements to count (all: None).

    Returns:
      int32 ``(rows, buckets)``.
    """
    rows = values.shape[0]
    width = high - low
    scale = jnp.where(width > 0, jnp.asarray(buckets, width.dtype) / width,
                      0)
    index = ((values - low[:, None]) * scale[:, None]).astype(jnp.int32)
    index = jnp.clip(index, 0, buckets - 1)
    index = index + (jnp.arange(rows, dtype=jnp.int32) * buckets)[:, None]
    ones = (jnp.ones(values.shape, jnp.int32) if weights is None
            else weights.astype(jnp.int32))
    counts = jnp.zeros(rows * buckets, jnp.int32).at[index.reshape(-1)].add(
        ones.reshape(-1))
    return counts.reshape(rows, buckets)


def first_index(values, maxima):
    """Per row, the first position holding the row's maximum (`jnp.argmax`
    without its two-valued reduction, slow on XLA:CPU). A row whose maximum
    is NaN gets its size (such rows are reduced again, masked)."""
    positions = jax.lax.broadcasted_iota(jnp.int32, values.shape, 1)
    return jnp.min(jnp.where(values == maxima[:, None], positions,
                             values.shape[1]), axis=1)


def squares(values):
    """Row sums of squares, summed in float64."""
    return jnp.sum(jnp.square(values), axis=-1, dtype=F64)


def zero_units(g, units):
    """Per row: output units (the last axis) whose gradient is exactly 0
    in every element (NaN is not 0)."""
    by_unit = g.reshape(g.shape[0], -1, units)
    return jnp.sum(jnp.all(by_unit == 0, axis=1), axis=1, dtype=F64)


def finite_max(values):
    """Max of each row over its finite entries; -inf for none."""
    return jnp.max(jnp.where(jnp.isfinite(values), values, -jnp.inf),
                   axis=-1)


def _dissolving_mean(pooled_abs, block_c, counts):
    dissolving = pooled_abs - block_c
    return jnp.where(dissolving < 0, 0.0, dissolving) / counts


def _stack_columns(columns, names):
    return jnp.stack([columns[name].astype(F64) for name in names], axis=1)


def _channels(abs_g, block_abs, block_c, dissolving_mean, counts, columns,
              view, block, encoding):
    """The four heatmap channels ``(count, 4, cells)``, encoded."""
    block_max = pool(abs_g, view, block, jnp.max).astype(F64)
    # a block whose sum is NaN shows NaN in its max too
    block_max = jnp.where(jnp.isnan(block_abs), block_abs, block_max)
    channels = jnp.stack([block_abs / counts, block_max, block_c / counts,
                          dissolving_mean], axis=1)
    if encoding == "float32":
        return channels.astype(jnp.float32)
    scales = _stack_columns(columns, heatmap_format.HEATMAP_CHANNEL_SCALES)
    return encode_log_uint8(channels, scales[:, :, None])


# -- the compiled steps -------------------------------------------------------

# A layout's static part: view, block, exact, heatmap, encoding, buckets.


def spec_of(layout):
    return (layout.view, layout.block, layout.exact, layout.heatmap,
            layout.encoding, layout.buckets)


@functools.partial(jax.jit, static_argnames=("spec", "record"),
                   donate_argnames=("compensation",))
def group_step(gradient, accumulated, compensation, pooled_abs,
               accumulated_l1, *, spec, record):
    """Window end of one group of stacked variables of equal layout
    (`kernels.tensorflow._group_step`'s twin, same arguments and outputs).
    The compensation is donated (the new one takes its buffer); ``C`` is
    not: XLA:CPU would copy the old ``C`` to read it after writing the new
    one in its place, a pass more (the window end took 47.8 ms instead of
    38.1 on a 4.2 M-element group). The old ``C`` is freed after its
    group's call, so the extra memory is one group's ``C`` at a time.

    Returns:
      ``(new state (4 arrays), outputs)``; outputs (with ``record``):
      ``reductions`` float64 ``(count, len(REDUCTIONS))``, ``histogram``
      int32 ``(count, buckets)``, ``heatmap`` ``(count, 4, cells)`` (with
      the layout's heatmap).
    """
    view, block, exact, heatmap, encoding, buckets = spec
    work = F64 if exact else jnp.float32
    new_c, new_compensation = kahan_add(accumulated, compensation, gradient)
    g = gradient.astype(work)
    c = new_c
    if exact:
        c = new_c.astype(work) - from_bfloat16_bits(new_compensation).astype(
            work)
    count = g.shape[0]
    abs_g = jnp.abs(g)
    # block sums in the working precision (at most a few hundred elements
    # each), summed on in float64
    block_abs = pool(abs_g, view, block, jnp.sum).astype(F64)
    l1 = jnp.sum(block_abs, axis=1)
    new_l1 = accumulated_l1 + jnp.where(jnp.isfinite(l1), l1, 0.0)
    new_pooled_abs = pooled_abs + block_abs
    state = (new_c, new_compensation, new_pooled_abs, new_l1)
    if not record:
        return state, {}
    counts = block_counts(view, block)
    abs_c = jnp.abs(c)
    block_c = pool(abs_c, view, block, jnp.sum).astype(F64)
    dissolving_mean = _dissolving_mean(new_pooled_abs, block_c, counts)
    max_abs = jnp.max(abs_g, axis=1)
    index = first_index(abs_g, max_abs)
    low = jnp.min(g, axis=1)
    high = jnp.max(g, axis=1)
    columns = {
        "sum": jnp.sum(g, axis=1, dtype=F64), "l1": l1, "sq": squares(g),
        "max_abs": max_abs,
        "max_abs_index": index, "min": low, "max": high,
        "accumulated_l1": jnp.sum(block_c, axis=1),
        "accumulated_sq": squares(c),
        "accumulated_max_abs": jnp.max(abs_c, axis=1),
        "accumulated_abs_l1": new_l1,
        "dissolving_max": finite_max(dissolving_mean),
        "nan_count": jnp.zeros(count, F64),
        "inf_count": jnp.zeros(count, F64),
        "zero_units": zero_units(g, view[1]),
    }
    out = {"reductions": _stack_columns(columns, REDUCTIONS),
           "histogram": histogram_counts(g, low, high, buckets) if buckets
           else jnp.zeros((count, 0), jnp.int32)}
    if heatmap:
        out["heatmap"] = _channels(abs_g, block_abs, block_c,
                                   dissolving_mean, counts, columns, view,
                                   block, encoding)
    return state, out


class ExactLayout:
    """The static description of a source's exact groups, reduced
    together by `exact_step`: their concatenation's segments (each
    element's variable, its position in it, its output unit), as numpy
    constants of the program.

    Args:
      specs: per exact group ``(count, view, heatmap, encoding, buckets)``.
    """

    def __init__(self, specs):
        self.specs = tuple(specs)
        self.counts = [count for count, *_ in self.specs]
        self.sizes = [view[0] * view[1] for _, view, *_ in self.specs]
        self.variables = sum(self.counts)
        settings = {spec[2:] for spec in self.specs}
        if len(settings) != 1:  # one source's groups share its settings
            raise ValueError(f"exact groups of several heatmap and "
                             f"histogram settings: {sorted(settings)}")
        self.heatmap, self.encoding, self.buckets = settings.pop()
        # per variable (each group's rows in turn): its size and units
        sizes = [size for count, size in zip(self.counts, self.sizes)
                 for _ in range(count)]
        columns = [view[1] for count, view, *_ in self.specs
                   for _ in range(count)]
        self.segment = layouts.segment_ids(sizes)
        self.position = np.concatenate(
            [np.arange(size, dtype=np.int32) for size in sizes])
        starts = np.cumsum([0] + columns[:-1], dtype=np.int64)
        self.unit = np.concatenate(
            [start + np.arange(size, dtype=np.int32) % units
             for start, size, units in zip(starts, sizes, columns)]).astype(
                 np.int32)
        self.unit_variable = layouts.segment_ids(columns)
        self.units = int(sum(columns))

    def __hash__(self):
        return hash(self.specs)

    def __eq__(self, other):
        return isinstance(other, ExactLayout) and other.specs == self.specs


def _segments(function, values, layout):
    """``function`` (a `jax.ops` segment reduction) of each variable's
    elements of the concatenation."""
    return function(values, layout.segment, layout.variables,
                    indices_are_sorted=True)


@functools.partial(jax.jit, static_argnames=("layout", "record"),
                   donate_argnames=("compensation",))
def exact_step(gradients, accumulated, compensation, pooled_abs,
               accumulated_l1, *, layout, record):
    """The window end of every exact group of a source in one call.

    Exact groups (variables of at most the heatmap's cells: biases,
    normalisation scales, small kernels) are not pooled, so their figures
    are segment reductions over the concatenation of all of them, in
    float64: one program per model whatever its number of such layouts
    (`group_step` would compile one per layout). The same outputs as
    `group_step` per group.

    Args:
      gradients, accumulated, compensation, pooled_abs, accumulated_l1:
        tuples, one per exact group, as `group_step`'s arguments.
      layout: the groups' `ExactLayout`.

    Returns:
      ``(new states (a tuple of 4-tuples), outputs (a tuple of dicts))``.
    """
    def flat(arrays):
        return jnp.concatenate([a.reshape(-1) for a in arrays])

    def split(values, sizes, shapes):
        parts, start = [], 0
        for size, shape in zip(sizes, shapes):
            parts.append(values[start:start + size].reshape(shape))
            start += size
        return parts

    new_c, new_compensation = kahan_add(flat(accumulated), flat(compensation),
                                        flat(gradients))
    g = flat(gradients).astype(F64)
    c = new_c.astype(F64) - from_bfloat16_bits(new_compensation).astype(F64)
    abs_g = jnp.abs(g)
    l1 = _segments(jax.ops.segment_sum, abs_g, layout)
    new_l1 = flat(accumulated_l1) + jnp.where(jnp.isfinite(l1), l1, 0.0)
    new_pooled_abs = flat(pooled_abs) + abs_g
    element_sizes = [n * size for n, size in zip(layout.counts, layout.sizes)]
    shapes = [(n, size) for n, size in zip(layout.counts, layout.sizes)]
    states = tuple(zip(split(new_c, element_sizes, shapes),
                       split(new_compensation, element_sizes, shapes),
                       split(new_pooled_abs, element_sizes, shapes),
                       split(new_l1, layout.counts, layout.counts)))
    if not record:
        return states, tuple({} for _ in layout.specs)
    abs_c = jnp.abs(c)
    dissolving = new_pooled_abs - abs_c
    dissolving = jnp.where(dissolving < 0, 0.0, dissolving)
    maxima = _segments(jax.ops.segment_max, abs_g, layout)
    index = _segments(jax.ops.segment_min, jnp.where(
        abs_g == maxima[layout.segment], layout.position,
        np.iinfo(np.int32).max), layout)
    low = _segments(jax.ops.segment_min, g, layout)
    high = _segments(jax.ops.segment_max, g, layout)
    unit_max = jax.ops.segment_max(abs_g, layout.unit, layout.units,
                                   indices_are_sorted=False)
    columns = {
        "sum": _segments(jax.ops.segment_sum, g, layout), "l1": l1,
        "sq": _segments(jax.ops.segment_sum, jnp.square(g), layout),
        "max_abs": maxima, "max_abs_index": index, "min": low, "max": high,
        "accumulated_l1": _segments(jax.ops.segment_sum, abs_c, layout),
        "accumulated_sq": _segments(jax.ops.segment_sum, jnp.square(c),
                                    layout),
        "accumulated_max_abs": _segments(jax.ops.segment_max, abs_c, layout),
        "accumulated_abs_l1": new_l1,
        "dissolving_max": _segments(jax.ops.segment_max, jnp.where(
            jnp.isfinite(dissolving), dissolving, -jnp.inf), layout),
        "nan_count": jnp.zeros(layout.variables, F64),
        "inf_count": jnp.zeros(layout.variables, F64),
        "zero_units": jax.ops.segment_sum(
            (unit_max == 0).astype(F64), layout.unit_variable,
            layout.variables, indices_are_sorted=True),
    }
    reductions = split(_stack_columns(columns, REDUCTIONS), layout.counts,
                       [(n, len(REDUCTIONS)) for n in layout.counts])
    buckets = layout.buckets
    if buckets:
        width = high - low
        scale = jnp.where(width > 0, buckets / width, 0.0)
        bucket = jnp.clip(((g - low[layout.segment])
                           * scale[layout.segment]).astype(jnp.int32), 0,
                          buckets - 1) + layout.segment * buckets
        counts = jnp.zeros(layout.variables * buckets, jnp.int32).at[
            bucket].add(1).reshape(layout.variables, buckets)
    else:
        counts = jnp.zeros((layout.variables, 0), jnp.int32)
    histograms = split(counts, layout.counts,
                       [(n, buckets) for n in layout.counts])
    outs = [{"reductions": r, "histogram": h}
            for r, h in zip(reductions, histograms)]
    if layout.heatmap:
        channels = jnp.stack([abs_g, abs_g, abs_c, dissolving], axis=1)
        if layout.encoding == "float32":
            channels = channels.astype(jnp.float32)
        else:
            scales = _stack_columns(
                columns, heatmap_format.HEATMAP_CHANNEL_SCALES)
            channels = encode_log_uint8(channels, scales[layout.segment])
        for out, part, (n, size) in zip(outs, split(
                channels, element_sizes,
                [(n, size, 4) for n, size in shapes]), shapes):
            out["heatmap"] = jnp.transpose(part, (0, 2, 1))
    return states, tuple(outs)


@functools.partial(jax.jit, static_argnames=("spec",))
def masked_step(gradient, accumulated, compensation, pooled_abs,
                accumulated_l1, *, spec):
    """A group's reductions over its finite elements, after the main step,
    for a group where some ``G`` or ``C`` holds NaN or Inf
    (`kernels.tensorflow._masked_step`'s twin: every row).

    Returns:
      ``(new accumulated_l1, repaired compensation, outputs)``.
    """
    view, block, _, heatmap, encoding, buckets = spec
    g = gradient.astype(F64)
    c = accumulated.astype(F64) - from_bfloat16_bits(compensation).astype(F64)
    finite = jnp.isfinite(g)
    zeroed = jnp.where(finite, g, 0.0)
    abs_g = jnp.abs(zeroed)
    raw_abs_c = jnp.abs(c)
    abs_c = jnp.where(jnp.isfinite(raw_abs_c), raw_abs_c, 0.0)
    l1 = jnp.sum(abs_g, axis=1)
    new_l1 = accumulated_l1 + l1
    low = jnp.min(jnp.where(finite, g, jnp.inf), axis=1)
    high = jnp.max(jnp.where(finite, g, -jnp.inf), axis=1)
    index = jnp.argmax(abs_g, axis=1)
    counts = block_counts(view, block)
    raw_abs_g = jnp.abs(g)
    block_abs = pool(raw_abs_g, view, block, jnp.sum)
    block_c = pool(raw_abs_c, view, block, jnp.sum)
    dissolving_mean = _dissolving_mean(pooled_abs, block_c, counts)
    columns = {
        "sum": jnp.sum(zeroed, axis=1), "l1": l1, "sq": squares(zeroed),
        "max_abs": jnp.take_along_axis(abs_g, index[:, None], axis=1)[:, 0],
        "max_abs_index": index, "min": low, "max": high,
        "accumulated_l1": jnp.sum(abs_c, axis=1),
        "accumulated_sq": squares(abs_c),
        "accumulated_max_abs": jnp.max(abs_c, axis=1),
        "accumulated_abs_l1": new_l1,
        "dissolving_max": finite_max(dissolving_mean),
        "nan_count": jnp.sum(jnp.isnan(g), axis=1, dtype=F64),
        "inf_count": jnp.sum(jnp.isinf(g), axis=1, dtype=F64),
        "zero_units": zero_units(g, view[1]),
    }
    out = {"reductions": _stack_columns(columns, REDUCTIONS),
           "histogram": histogram_counts(
               jnp.where(finite, g, 0.0), low, high, buckets, finite)
           if buckets else jnp.zeros((g.shape[0], 0), jnp.int32)}
    if heatmap:
        out["heatmap"] = _channels(raw_abs_g, block_abs, block_c,
                                   dissolving_mean, counts, columns, view,
                                   block, encoding)
    return new_l1, finite_compensation(accumulated, compensation), out


@functools.partial(jax.jit, static_argnames=("view", "gate_count",
                                             "gate_view", "gate_block"))
def gate_step(gradient, *, view, gate_count, gate_view, gate_block):
    """Per gate of a fused recurrent weight: ``(l2, mean|g|, max|g|)`` and
    the pooled mean |g| of each gate's view (`kernels.tensorflow._gate_step`'s
    twin).

    Args:
      gradient: the weight's flat gradient; ``view`` its ``(rows, gates *
        units)`` matrix view.
    """
    rows = view[0]
    gates = jnp.transpose(jnp.abs(gradient.astype(F64)).reshape(
        rows, gate_count, -1), (1, 0, 2))
    finite = jnp.where(jnp.isfinite(gates), gates, 0.0)
    table = jnp.stack([jnp.sqrt(jnp.sum(jnp.square(finite), axis=(1, 2))),
                       jnp.mean(finite, axis=(1, 2)),
                       jnp.max(finite, axis=(1, 2))], axis=1)
    pooled = pool(gates.reshape(gate_count, -1), gate_view, gate_block,
                  jnp.sum)
    heatmap = pooled / block_counts(gate_view, gate_block)
    return table, heatmap.astype(jnp.float32)


# Variables of at most this many elements have their norms summed as
# segments of one concatenation (one reduction for all of them).
SMALL_WEIGHTS = 1 << 16


@jax.jit
def weight_l2s(*values):
    """``‖W‖₂`` of each array, float64, its squares summed in float64 (one
    read): the small arrays together as segments of their concatenation,
    each large one alone. One program per model (its shapes)."""
    small = [n for n, v in enumerate(values) if v.size <= SMALL_WEIGHTS]
    squares_ = [None] * len(values)
    if small:
        segment = layouts.segment_ids([values[n].size for n in small])
        flat = jnp.concatenate([values[n].reshape(-1).astype(F64)
                                for n in small])
        sums = jax.ops.segment_sum(jnp.square(flat), segment, len(small),
                                   indices_are_sorted=True)
        for i, n in enumerate(small):
            squares_[n] = sums[i]
    for n, v in enumerate(values):
        if squares_[n] is None:
            squares_[n] = jnp.sum(jnp.square(v.astype(jnp.float32)),
                                  dtype=F64)
    return jnp.sqrt(jnp.stack(squares_))


@jax.jit
def _stack(*gradients):
    return jnp.stack([g.reshape(-1).astype(jnp.float32) for g in gradients])


def _value(variable):
    """A Keras variable's JAX array (an array as it is)."""
    return getattr(variable, "value", variable)


def _placement(variable):
    """``(device, committed)`` of the array the window end reads for a
    Keras variable or array: `local_array`'s device, committed when the
    array is (or is replicated over several devices)."""
    array = _value(variable)
    device = next(iter(local_array(array).devices()))
    return device, bool(getattr(array, "committed", True)) or len(
        array.devices()) > 1

class Kernel(kernels.WindowKernel):
    """`kernels.WindowKernel` in jitted JAX functions (see the module
    docstring)."""

    @_x64
    def new_state(self, layout, count, variable):
        return self._zero_state(layout, count, _placement(variable)[0])

    @_x64
    def _zero_state(self, layout, count, device):
        shapes = kernels.state_shapes(layout, count)
        dtypes = (np.float32, np.uint16, np.float64, np.float64)
        return kernels.GroupState(
            tuple(filled(shapes[name], dtype, device=device)
                  for name, dtype in zip(kernels.STATE_FIELDS, dtypes)),
            shapes)

    def prepare(self, groups, variables):
        # the variables' placements are read here: during a `fit` the
        # JAX trainer holds their values, and a Keras variable cannot be
        # read from another thread
        groups = [(layout, count, _placement(variable))
                  for layout, count, variable in groups]
        weights = [(tuple(v.shape), np.dtype(v.dtype)) + _placement(v)
                   for v in variables]
        thread = threading.Thread(target=self._compile,
                                  args=(groups, weights),
                                  name="tb_gradients-compile", daemon=True)
        thread.start()
        return thread

    def _compile(self, groups, weights):
        try:
            self._run_on_zeros(groups, weights)
        except Exception:  # pylint: disable=broad-except
            # only a head start: the window end compiles what is missing
            pass

    @_x64
    def _run_on_zeros(self, groups, weights):
        """Runs the steps once on zeros shaped and placed as a window's
        arrays (the exact groups together, each other distinct layout
        alone: at most the largest group's state at a time): jit's cache
        then holds them compiled.

        Args:
          groups: ``(layout, count, (device, committed))`` per group.
          weights: ``(shape, dtype, device, committed)`` per variable.
        """
        exact = [group for group in groups if group[0].exact]
        batches = [exact] if len(exact) > 1 else []
        done = set()
        for group in groups:
            key = (spec_of(group[0]), group[1], group[0].size)
            if (len(exact) < 2 or not group[0].exact) and key not in done:
                done.add(key)
                batches.append([group])
        for batch in batches:
            states = [self._zero_state(layout, count, device)
                      for layout, count, (device, _) in batch]
            stacked = [filled((count, layout.size), np.float32,
                              device=device if committed else None)
                       for layout, count, (device, committed) in batch]
            outs = self.window_end(states, [group[0] for group in batch],
                                   stacked, True, [[] for _ in batch])
            jax.block_until_ready(outs)
        jax.block_until_ready(self.weight_norms([
            filled(shape, dtype, device=device if committed else None)
            for shape, dtype, device, committed in weights]))

    def saved_arrays(self, state):
        """The state's arrays; on the CPU as zero-copy numpy views of the
        buffers, which stay valid until the next window end donates them
        (`resume.StateWriter.wait` comes first)."""
        for name, value in zip(state.FIELDS, state.values()):
            on_cpu = all(d.platform == "cpu" for d in value.devices())
            if on_cpu or value.dtype == np.float64:
                # small float64 (per block or variable) as well: a JAX op
                # on it outside `enable_x64` would round it to float32
                value = np.asarray(value)
            yield name, value

    @_x64
    def load_state(self, state, arrays):
        values = []
        for current, array in zip(state.values(), state.checked(arrays)):
            values.append(jax.device_put(array,
                                         next(iter(current.devices()))))
        state.replace(values)

    def stack(self, gradients):
        return _stack(*(local_array(g) for g in gradients))

    @_x64
    def group_end(self, state, layout, gradients, record, gated=()):
        gradients = local_array(gradients)
        new_state, out = group_step(gradients, *state.values(),
                                    spec=spec_of(layout), record=record)
        state.replace(new_state)
        if not record:
            return None
        return self._with_gates(out, gradients, gated)

    @_x64
    def window_end(self, states, group_layouts, stacked, record, gated):
        exact = [n for n, layout in enumerate(group_layouts) if layout.exact]
        outs = [None] * len(states)
        if len(exact) > 1:
            layout = ExactLayout(
                (states[n].shapes["accumulated_l1"][0],
                 group_layouts[n].view, group_layouts[n].heatmap,
                 group_layouts[n].encoding, group_layouts[n].buckets)
                for n in exact)
            gradients = [local_array(stacked[n]) for n in exact]
            new_states, exact_outs = exact_step(
                tuple(gradients),
                *(tuple(getattr(states[n], field) for n in exact)
                  for field in kernels.STATE_FIELDS),
                layout=layout, record=record)
            for n, new_state, out, array in zip(exact, new_states, exact_outs,
                                                gradients):
                states[n].replace(new_state)
                if record:
                    outs[n] = self._with_gates(out, array, gated[n])
        else:
            exact = []
        for n, (state, layout, gradients) in enumerate(zip(
                states, group_layouts, stacked)):
            if n not in exact:
                outs[n] = self.group_end(state, layout, gradients, record,
                                         gated[n])
        return outs

    def _with_gates(self, out, gradients, gated):
        out = dict(out)
        out["gates"] = {
            row: gate_step(gradients[row], view=gate_layout.view,
                           gate_count=gate_layout.gate_count,
                           gate_view=gate_layout.gate_view,
                           gate_block=gate_layout.gate_block)
            for row, gate_layout in gated}
        return out

    @_x64
    def masked_end(self, state, layout, gradients, update_l1):
        new_l1, compensation, out = masked_step(
            local_array(gradients), *state.values(), spec=spec_of(layout))
        state.compensation = compensation
        state.accumulated_l1 = jnp.where(np.asarray(update_l1, bool), new_l1,
                                         state.accumulated_l1)
        return out

    @_x64
    def weight_norms(self, variables):
        if not variables:
            return filled((0,), np.float64)
        return weight_l2s(*(local_array(_value(v)) for v in variables))

    def _fetch(self, arrays):
        # writable copies (a CPU array's host view is read-only)
        return [np.array(array) for array in jax.device_get(arrays)]
