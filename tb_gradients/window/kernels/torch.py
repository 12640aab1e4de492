"""The window end in torch ops, on the device that holds the accumulators.

The same figures as `kernels.tensorflow` (docs/STATISTICS.md), computed
with torch on the PyTorch capture's window sums where they live; the
group's state (`kernels.GroupState`) stays on that device, and only the
reductions, pooled heatmap channels, histogram counts and gate tables
reach the host: `to_host` packs them into one byte buffer and copies it
once per window.

Eager ops (no compilation): large groups are reduced in float32 and their
block sums summed in float64, small exact variables in float64, as on
TensorFlow. Pooling pads a ragged view to whole blocks (only when it is
ragged) and reduces the block axes of a 5-D view.
"""

import math

import numpy as np
import torch

from tb_gradients.format import heatmap as heatmap_format
from tb_gradients.window import kernels
from tb_gradients.window import statistics

REDUCTIONS = statistics.REDUCTIONS
F64 = torch.float64


# -- pure pieces (tensors in, tensors out) ------------------------------------


def kahan_add(total, compensation, value):
    """``total + value`` with Kahan compensation (`kernels.tensorflow`'s
    twin): returns the new float32 total and bfloat16 compensation.
    ``total``'s buffer is reused for the rounding error (the state it
    holds is replaced by the result)."""
    corrected = value - compensation.float()
    new_total = total + corrected
    # (new_total - total) - corrected, in total's buffer
    lost = torch.sub(new_total, total, out=total).sub_(corrected)
    return new_total, lost.to(torch.bfloat16)


def finite_compensation(total, compensation):
    """Zero compensation where ``total`` is not finite."""
    return torch.where(torch.isfinite(total), compensation,
                       torch.zeros_like(compensation))


def pool(values, view, block, reduce):
    """Block reductions of each row's matrix view.

    Args:
      values: ``(count, rows * cols)`` non-negative values.
      view: ``(rows, cols)``; block: ``(block_rows, block_cols)``.
      reduce: ``"sum"`` or ``"amax"``.

    Returns:
      ``(count, grid_rows * grid_cols)``; the last block of each axis may
      be smaller.
    """
    count = values.shape[0]
    (rows, cols), (block_rows, block_cols) = view, block
    grid_rows, grid_cols = -(-rows // block_rows), -(-cols // block_cols)
    x = values.reshape(count, rows, cols)
    padding = (grid_rows * block_rows - rows, grid_cols * block_cols - cols)
    if any(padding):
        x = torch.nn.functional.pad(x, (0, padding[1], 0, padding[0]))
    x = x.reshape(count, grid_rows, block_rows, grid_cols, block_cols)
    return getattr(x, reduce)(dim=(2, 4)).reshape(count, -1)


def block_counts(view, block, device):
    """Number of elements of each pooled block, float64 ``(1, cells)``."""
    (rows, cols), (block_rows, block_cols) = view, block
    per_row = np.bincount(np.arange(rows) // block_rows)
    per_column = np.bincount(np.arange(cols) // block_cols)
    return torch.as_tensor(np.outer(per_row, per_column).reshape(1, -1),
                           dtype=F64, device=device)


def encode_log_uint8(values, scale, decades=heatmap_format.HEATMAP_DECADES):
    """`kernels.tensorflow.encode_log_uint8` in torch (float64)."""
    values = values.to(F64)
    scale = scale.to(F64)
    levels = float(heatmap_format.HEATMAP_CODE_LEVELS)
    usable = torch.isfinite(scale) & (scale > 0)
    ratio = values / torch.where(usable, scale, torch.ones_like(scale))
    position = (torch.log(ratio) / math.log(10.0) + decades) / decades
    position = torch.round(position * (levels - 1)) + 1
    visible = torch.isfinite(position) & (position >= 1) & usable
    codes = torch.where(visible, position.clamp(1, levels),
                        torch.zeros_like(position))
    codes = torch.where(torch.isinf(values), torch.full_like(
        codes, float(heatmap_format.HEATMAP_CODE_INF)), codes)
    codes = torch.where(torch.isnan(values), torch.full_like(
        codes, float(heatmap_format.HEATMAP_CODE_NAN)), codes)
    return codes.to(torch.uint8)


def histogram_counts(values, low, high, buckets, weights=None):
    """Equal-width bucket counts of each row between its ``low`` and
    ``high`` (a row's maximum in its last bucket, as `np.histogram`);
    ``weights``: 0/1 of the elements to count (None: all). int32
    ``(rows, buckets)``."""
    rows = values.shape[0]
    width = high - low
    scale = torch.where(width > 0, buckets / width, torch.zeros_like(width))
    position = (values - low[:, None]).mul_(scale[:, None])
    # the bucket as a float (exact below 2**24), clamped, then an index;
    # NaN (in rows the masked path reduces again) counted in bucket 0
    position = position.nan_to_num_(0.0).clamp_(0, buckets - 1).trunc_()
    if rows > 1:
        position += (torch.arange(rows, device=values.device,
                                  dtype=position.dtype) * buckets)[:, None]
    counts = torch.bincount(
        position.reshape(-1).to(torch.int32), minlength=rows * buckets,
        weights=None if weights is None else weights.reshape(-1).to(F64))
    return counts.reshape(rows, buckets).to(torch.int32)


def squares(values):
    """Row sums of squares, in float64 (float32 rows through their norm:
    one pass, no squared temporary)."""
    if values.dtype == F64:
        return values.square().sum(dim=-1)
    return torch.linalg.vector_norm(values, dim=-1).to(F64).square()


def zero_units(g, units):
    """Per row: output units (the last axis) whose gradient is exactly 0
    in every element (NaN is not 0)."""
    return (g.reshape(g.shape[0], -1, units) == 0).all(dim=1).sum(
        dim=1).to(F64)


def finite_max(values):
    """Max of each row over its finite entries; -inf for none."""
    return torch.where(torch.isfinite(values), values,
                       torch.full_like(values, -math.inf)).amax(dim=-1)


def _dissolving_mean(pooled_abs, block_c, counts):
    dissolving = pooled_abs - block_c
    return torch.where(dissolving < 0, torch.zeros_like(dissolving),
                       dissolving) / counts


def _stack_columns(columns, names):
    return torch.stack([columns[name].to(F64) for name in names], dim=1)


def _channels(abs_g, block_abs, block_c, dissolving_mean, counts, columns,
              view, block, encoding):
    """The four heatmap channels ``(count, 4, cells)``, encoded."""
    block_max = pool(abs_g, view, block, "amax").to(F64)
    # a block whose sum is NaN shows NaN in its max too
    block_max = torch.where(torch.isnan(block_abs), block_abs, block_max)
    channels = torch.stack([block_abs / counts, block_max, block_c / counts,
                            dissolving_mean], dim=1)
    if encoding == "float32":
        return channels.float()
    scales = _stack_columns(columns, heatmap_format.HEATMAP_CHANNEL_SCALES)
    return encode_log_uint8(channels, scales[:, :, None])


def _histogram(values, low, high, buckets, weights=None):
    if not buckets:
        return torch.zeros((values.shape[0], 0), dtype=torch.int32,
                           device=values.device)
    return histogram_counts(values, low, high, buckets, weights)


def group_step(gradient, state, layout, record):
    """Window end of one group of stacked variables of equal layout
    (`kernels.tensorflow._group_step`'s twin: the same outputs).

    Returns:
      ``(new state values, outputs or None)``.
    """
    accumulated, compensation, pooled_abs, accumulated_l1 = state
    view, block = layout.view, layout.block
    work = F64 if layout.exact else torch.float32
    new_c, new_compensation = kahan_add(accumulated, compensation, gradient)
    g = gradient.to(work)
    c = new_c.to(work) - new_compensation.to(work) if layout.exact else new_c
    count = g.shape[0]
    abs_g = g.abs()
    block_abs = pool(abs_g, view, block, "sum").to(F64)
    l1 = block_abs.sum(dim=1)
    new_l1 = accumulated_l1 + torch.where(torch.isfinite(l1), l1,
                                          torch.zeros_like(l1))
    new_pooled_abs = pooled_abs + block_abs
    new_state = (new_c, new_compensation, new_pooled_abs, new_l1)
    if not record:
        return new_state, None
    counts = block_counts(view, block, g.device)
    abs_c = c.abs()
    block_c = pool(abs_c, view, block, "sum").to(F64)
    dissolving_mean = _dissolving_mean(new_pooled_abs, block_c, counts)
    index = abs_g.argmax(dim=1)
    low, high = g.amin(dim=1), g.amax(dim=1)
    zeros = torch.zeros(count, dtype=F64, device=g.device)
    columns = {
        "sum": g.sum(dim=1, dtype=F64), "l1": l1, "sq": squares(g),
        "max_abs": abs_g.gather(1, index[:, None])[:, 0],
        "max_abs_index": index, "min": low, "max": high,
        "accumulated_l1": block_c.sum(dim=1),
        "accumulated_sq": squares(c),
        "accumulated_max_abs": abs_c.amax(dim=1),
        "accumulated_abs_l1": new_l1,
        "dissolving_max": finite_max(dissolving_mean),
        "nan_count": zeros, "inf_count": zeros,
        "zero_units": zero_units(g, view[1]),
    }
    out = {"reductions": _stack_columns(columns, REDUCTIONS),
           "histogram": _histogram(g, low, high, layout.buckets)}
    if layout.heatmap:
        out["heatmap"] = _channels(abs_g, block_abs, block_c,
                                   dissolving_mean, counts, columns, view,
                                   block, layout.encoding)
    return new_state, out


def masked_step(gradient, state, layout):
    """A group's reductions over its finite elements, after the main step
    (`kernels.tensorflow._masked_step`'s twin: every row).

    Returns:
      ``(new accumulated_l1, repaired compensation, outputs)``.
    """
    accumulated, compensation, pooled_abs, accumulated_l1 = state
    view, block = layout.view, layout.block
    g = gradient.to(F64)
    c = accumulated.to(F64) - compensation.to(F64)
    finite = torch.isfinite(g)
    zeroed = torch.where(finite, g, torch.zeros_like(g))
    abs_g = zeroed.abs()
    raw_abs_c = c.abs()
    abs_c = torch.where(torch.isfinite(raw_abs_c), raw_abs_c,
                        torch.zeros_like(raw_abs_c))
    l1 = abs_g.sum(dim=1)
    new_l1 = accumulated_l1 + l1
    low = torch.where(finite, g, torch.full_like(g, math.inf)).amin(dim=1)
    high = torch.where(finite, g, torch.full_like(g, -math.inf)).amax(dim=1)
    index = abs_g.argmax(dim=1)
    counts = block_counts(view, block, g.device)
    raw_abs_g = g.abs()
    block_abs = pool(raw_abs_g, view, block, "sum")
    block_c = pool(raw_abs_c, view, block, "sum")
    dissolving_mean = _dissolving_mean(pooled_abs, block_c, counts)
    columns = {
        "sum": zeroed.sum(dim=1), "l1": l1, "sq": squares(zeroed),
        "max_abs": abs_g.gather(1, index[:, None])[:, 0],
        "max_abs_index": index, "min": low, "max": high,
        "accumulated_l1": abs_c.sum(dim=1),
        "accumulated_sq": squares(abs_c),
        "accumulated_max_abs": abs_c.amax(dim=1),
        "accumulated_abs_l1": new_l1,
        "dissolving_max": finite_max(dissolving_mean),
        "nan_count": torch.isnan(g).sum(dim=1).to(F64),
        "inf_count": torch.isinf(g).sum(dim=1).to(F64),
        "zero_units": zero_units(g, view[1]),
    }
    out = {"reductions": _stack_columns(columns, REDUCTIONS),
           "histogram": _histogram(zeroed, low, high, layout.buckets,
                                   finite)}
    if layout.heatmap:
        out["heatmap"] = _channels(raw_abs_g, block_abs, block_c,
                                   dissolving_mean, counts, columns, view,
                                   block, layout.encoding)
    return new_l1, finite_compensation(accumulated, compensation), out


def gate_step(gradient, layout):
    """Per gate of a fused recurrent weight: ``(l2, mean|g|, max|g|)`` and
    the pooled mean |g| of each gate's view (`kernels.tensorflow._gate_step`'s
    twin); ``gradient`` is the weight's flat gradient."""
    gate_count = layout.gate_count
    gates = gradient.to(F64).abs().reshape(layout.view[0], gate_count,
                                           -1).transpose(0, 1)
    finite = torch.where(torch.isfinite(gates), gates,
                         torch.zeros_like(gates))
    table = torch.stack([finite.square().sum(dim=(1, 2)).sqrt(),
                         finite.mean(dim=(1, 2)),
                         finite.amax(dim=(1, 2))], dim=1)
    pooled = pool(gates.reshape(gate_count, -1), layout.gate_view,
                  layout.gate_block, "sum")
    heatmap = pooled / block_counts(layout.gate_view, layout.gate_block,
                                    gradient.device)
    return table, heatmap.float()


def _value(variable):
    """A Keras variable's torch tensor (a tensor as it is)."""
    return getattr(variable, "value", variable)


class Kernel(kernels.WindowKernel):
    """`kernels.WindowKernel` in torch ops (see the module docstring)."""

    def new_state(self, layout, count, variable):
        device = _value(variable).device
        shapes = kernels.state_shapes(layout, count)
        dtypes = (torch.float32, torch.bfloat16, F64, F64)
        return kernels.GroupState(
            tuple(torch.zeros(shapes[name], dtype=dtype, device=device)
                  for name, dtype in zip(kernels.STATE_FIELDS, dtypes)),
            shapes)

    def saved_arrays(self, state):
        for name, value in zip(state.FIELDS, state.values()):
            if value.dtype == torch.bfloat16:
                value = value.view(torch.uint16)
            yield name, value

    def load_state(self, state, arrays):
        values = []
        for current, array in zip(state.values(), state.checked(arrays)):
            value = torch.from_numpy(np.array(array)).to(current.device)
            if current.dtype == torch.bfloat16:
                value = value.view(torch.bfloat16)
            values.append(value)
        state.replace(values)

    def stack(self, gradients):
        return torch.stack([g.detach().reshape(-1).float()
                            for g in gradients])

    def group_end(self, state, layout, gradients, record, gated=()):
        with torch.no_grad():
            gradients = gradients.detach()
            new_state, out = group_step(gradients, state.values(), layout,
                                        record)
            state.replace(new_state)
            if not record:
                return None
            out["gates"] = {row: gate_step(gradients[row], gate_layout)
                            for row, gate_layout in gated}
        return out

    def masked_end(self, state, layout, gradients, update_l1):
        with torch.no_grad():
            new_l1, compensation, out = masked_step(
                gradients.detach(), list(state.values()), layout)
            state.compensation = compensation
            state.accumulated_l1 = torch.where(
                torch.as_tensor(update_l1, dtype=torch.bool,
                                device=new_l1.device),
                new_l1, state.accumulated_l1)
        return out

    def weight_norms(self, variables):
        with torch.no_grad():
            values = [_value(v).detach() for v in variables]
            if not values:
                return torch.zeros(0, dtype=F64)
            norms = torch._foreach_norm([v.float() for v in values])
            devices = {n.device for n in norms}
            if len(devices) > 1:  # gathered: one number per variable
                norms = [n.cpu() for n in norms]
            return torch.stack(norms).to(F64)

    def _fetch(self, arrays):
        """One copy to the host: every tensor's bytes packed into one
        buffer per device, split on the host."""
        host = [None] * len(arrays)
        by_device = {}
        for index, array in enumerate(arrays):
            by_device.setdefault(array.device, []).append(index)
        for device, indices in by_device.items():
            if device.type == "cpu":
                for index in indices:
                    host[index] = arrays[index].numpy()
                continue
            parts = [arrays[i].contiguous().reshape(-1).view(torch.uint8)
                     for i in indices]
            packed = torch.cat(parts).cpu().numpy()
            offset = 0
            for index, part in zip(indices, parts):
                size = part.numel()
                array = arrays[index]
                host[index] = packed[offset:offset + size].view(
                    _NUMPY_DTYPES[array.dtype]).reshape(array.shape)
                offset += size
        return host


_NUMPY_DTYPES = {torch.float64: np.float64, torch.float32: np.float32,
                 torch.int64: np.int64, torch.int32: np.int32,
                 torch.uint8: np.uint8, torch.bool: np.bool_}
