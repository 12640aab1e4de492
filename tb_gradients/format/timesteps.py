"""The ``timesteps`` and ``timestep_norms`` kinds: a recurrent layer's
gradient with respect to its output, pooled to at most ``max_timesteps`` ×
``max_channels`` cells per sample, masked timesteps marked, and the
per-timestep norms beside it."""

import numpy as np

from tb_gradients.format import decoding
from tb_gradients.format import metadata

# Columns of the timestep-norm tensor (axis 0).
TIMESTEP_NORM_CHANNELS = ("l2", "valid")


def _block_mean_axis(values, block, axis):
    """Mean over consecutive blocks of ``block`` along ``axis``."""
    length = values.shape[axis]
    starts = np.arange(0, length, block)
    sums = np.add.reduceat(values, starts, axis=axis)
    counts = np.diff(np.append(starts, length)).astype(np.float64)
    shape = [1] * values.ndim
    shape[axis] = len(counts)
    return sums / counts.reshape(shape)


# non-finite gradients are data here, not errors: no numpy warnings
@np.errstate(invalid="ignore", over="ignore", divide="ignore")
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


def write_timesteps(batch, source, info, view, samples):
    """Gradient w.r.t. a layer's output: values, and per-timestep norms.

    Args:
      info: from `capture.recurrent.describe`.
      view: from `timestep_view`.
      samples: number of probe samples.
    """
    fields = dict(info, samples=int(samples), timesteps=int(view["timesteps"]),
                  channels=int(view["channels"]),
                  time_block=int(view["time_block"]),
                  channel_block=int(view["channel_block"]),
                  direction_ranges=view["direction_ranges"])
    summary_metadata = metadata.plugin_metadata(
        metadata.KIND_TIMESTEPS, source, window=batch.window,
        description=f"d(loss)/d(output) of layer {info['layer']}", **fields)
    batch.tensor(metadata.timesteps_tag(source, info["layer"]),
                 view["values"], summary_metadata)
    if view["l2"] is None:
        return
    norms_metadata = metadata.plugin_metadata(
        metadata.KIND_TIMESTEP_NORMS, source, window=batch.window,
        description=f"Per-timestep gradient norm of layer {info['layer']}",
        channels_axis0=list(TIMESTEP_NORM_CHANNELS), **fields)
    batch.tensor(metadata.timestep_norms_tag(source, info["layer"]),
                 np.stack([view["l2"], view["valid"]]), norms_metadata)


def write_timestep_gradients(batch, layer_infos, results, max_timesteps,
                             max_channels):
    """The probe's timestep series of each recurrent layer, pooled.

    Args:
      layer_infos: per layer, `capture.recurrent.describe`.
      results: per layer, ``(gradient, mask)`` from the timestep capture.
    """
    for info, (gradient, mask) in zip(layer_infos, results):
        view = timestep_view(
            gradient, mask=mask, max_timesteps=max_timesteps,
            max_channels=max_channels, directions=info["direction_count"])
        write_timesteps(batch, "probe", info, view, gradient.shape[0])


def decode_timesteps(value):
    """One stored ``timesteps`` tensor, checked: float ``(samples, T', C')``
    or ``(samples, C')``.

    Raises:
      decoding.ReadError: for any other rank or dtype.
    """
    array = np.asarray(value)
    rank = array.ndim if array.ndim in (2, 3) else 3
    return decoding.checked(
        array, "a float tensor of shape (samples, timesteps, channels) or "
        "(samples, channels)", ndim=rank)


def decode_timestep_norms(value, values_shape=None):
    """One stored ``timestep_norms`` tensor, checked: float ``(2, samples,
    T')``, with the samples and timesteps of the same window's values when
    their shape is given.

    Raises:
      decoding.ReadError: for any other shape or dtype.
    """
    count = len(TIMESTEP_NORM_CHANNELS)
    shape = (count, None, None)
    what = f"a float tensor of shape ({count}, samples, timesteps)"
    if values_shape is not None:
        shape = (count,) + tuple(int(d) for d in values_shape[:2])
        what = f"a float tensor of shape {shape!r} (as its values)"
    return decoding.checked(value, what, ndim=3, shape=shape)
