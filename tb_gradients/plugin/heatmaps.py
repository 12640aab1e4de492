"""Heatmaps: a stored heatmap tensor decoded into the ``/heatmap`` channels.

uint8 channels are decoded with the same variable and epoch's scale
statistic (`plugin.stats.stat_rows`); float32 channels are read as they
are (docs/FORMAT.md, heatmap series). Arrays in, JSON-ready values out, so
each function can be tested on hand-made input; `Handler` serves the route.
"""

import math

import numpy as np

from tb_gradients import json_values
from tb_gradients.format import decoding
from tb_gradients.format import heatmap
from tb_gradients.format import metadata
from tb_gradients.format import variable_stats
from tb_gradients.plugin import cache as plugin_cache
from tb_gradients.plugin import handler
from tb_gradients.plugin import listing as plugin_listing
from tb_gradients.plugin import reading
from tb_gradients.plugin import series as plugin_series
from tb_gradients.plugin import stats as plugin_stats


def heatmap_layout(content):
    """Channel order and scale statistics of a heatmap series.

    Returns:
      ``{channel name: (position in the tensor, scale statistic)}`` for the
      channels of ``heatmap.HEATMAP_CHANNELS`` the series has.
    """
    channels = content.get("channels")
    scales = content.get("channel_scales")
    if not (isinstance(channels, list) and isinstance(scales, list)
            and len(channels) == len(scales)):
        channels = list(heatmap.HEATMAP_CHANNELS)
        scales = list(heatmap.HEATMAP_CHANNEL_SCALES)
    layout = {}
    for position, (channel, scale) in enumerate(zip(channels, scales)):
        if channel in heatmap.HEATMAP_CHANNELS and scale in \
                variable_stats.VARIABLE_STAT_NAMES:
            layout[channel] = (position, scale)
    return layout


def decades(content):
    """The uint8 code range in decades (the writer's, else the default)."""
    value = content.get("decades")
    if isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value) and value > 0:
        return float(value)
    return heatmap.HEATMAP_DECADES


def decode_channel(plane, encoding, scale, content):
    """Float values of one stored heatmap channel.

    Args:
      plane: The channel's ``(rows, cols)`` array as stored.
      encoding: ``"uint8"`` or ``"float32"``.
      scale: The same variable and epoch's value of the channel's scale
        statistic (``NaN`` when unknown; a uint8 code of 0 still decodes to
        0 and 254/255 to ±Inf/NaN).
      content: The series' parsed content (for ``decades``).

    Raises:
      format.decoding.ReadError: For an unknown encoding.
    """
    if encoding == "float32":
        return np.asarray(plane, dtype=np.float64)
    if encoding == "uint8":
        return heatmap.decode_log_uint8(plane, scale, decades(content))
    raise decoding.ReadError("unknown heatmap encoding %r" % (encoding,))


def channel_body(values, scale_over_epochs):
    """The JSON of one decoded channel (see docs/API.md, ``/heatmap``)."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = np.isfinite(flat)
    return {
        "values": json_values.finite_list(flat),
        "nan": np.flatnonzero(np.isnan(flat)).tolist(),
        "inf": np.flatnonzero(np.isinf(flat)).tolist(),
        "max": float(flat[finite].max()) if finite.any() else None,
        "scale": scale_over_epochs,
    }


def heatmap_channels(tensor, content, rows, epoch):
    """Decoded channels of one heatmap epoch.

    Args:
      tensor: The stored ``(channels, rows, cols)`` array of ``epoch``.
      content: The heatmap series' parsed content.
      rows: `stat_rows` of the same variable (may be empty).
      epoch: The epoch of ``tensor``.

    Returns:
      ``{channel name: channel body}`` for ``heatmap.HEATMAP_CHANNELS``.

    Raises:
      format.decoding.ReadError: When the tensor does not have the
        announced layout (`format.heatmap.decode`).
    """
    tensor = heatmap.decode(content, tensor)
    layout = heatmap_layout(content)
    encoding = content.get("encoding", "uint8")
    row = rows.get(epoch)
    body = {}
    for channel in heatmap.HEATMAP_CHANNELS:
        if channel not in layout or layout[channel][0] >= tensor.shape[0]:
            continue
        position, scale_name = layout[channel]
        column = plugin_stats.stat_index(scale_name)
        scale = float(row[column]) if row is not None else float("nan")
        values = decode_channel(tensor[position], encoding, scale, content)
        overall = plugin_stats.max_finite(r[column] for r in rows.values())
        body[channel] = channel_body(values, overall)
    return body


class Handler(handler.Handler):
    """The ``/heatmap`` route."""

    def heatmap(self, ctx, experiment, run, source, variable,
                requested=None):
        """Decoded heatmap channels of one variable at one epoch.

        Args:
          requested: A `plugin.params.RequestedStep`, or ``None`` for the
            latest record.
        """
        heatmap_tag = metadata.heatmap_tag(source, variable)
        stats_tag = metadata.variable_stats_tag(source, variable)
        tags = [heatmap_tag, stats_tag]
        listing = self._data.list(ctx, experiment, runs=[run],
                                  tags=tags).get(run, {})
        parsed = plugin_listing.parse_listing(listing)
        content = reading.of_kind(
            parsed.get(heatmap_tag), metadata.KIND_HEATMAP,
            "No heatmap of variable %r for run %r and source %r"
            % (variable, run, source))
        # The frontend asks for several variables' heatmaps at once and for
        # every epoch while playing: the two series are read once while
        # they are unchanged.
        key = ("heatmap", experiment, run, source, variable,
               plugin_cache.series_signature(listing, tags))
        by_epoch, rows = self._data.series_cache.get_or_build(
            key, lambda: self._heatmap_series(ctx, experiment, run, tags,
                                              parsed))
        epoch, epochs = reading.at_step(
            by_epoch, requested, "heatmap of variable %r" % (variable,),
            "for run %r and source %r" % (run, source))
        tensor = by_epoch[epoch].numpy
        with decoding.locating(run=run, tag=heatmap_tag, step=epoch):
            channels = heatmap_channels(tensor, content, rows, epoch)
        return {
            "run": run, "source": source, "variable": variable,
            "epoch": epoch, "epochs": epochs,
            "shape": content.get("shape"),
            "view_shape": content.get("view_shape"),
            "block": content.get("block"),
            "rows": int(tensor.shape[1]), "cols": int(tensor.shape[2]),
            "encoding": content.get("encoding"),
            "channels": channels,
        }

    def _heatmap_series(self, ctx, experiment, run, tags, parsed):
        """``(by_epoch, rows)`` of a heatmap series and its variable's
        statistics (`plugin.stats.stat_rows`, for the channels' scales)."""
        heatmap_tag, stats_tag = tags
        data, unreadable = self._data.read_isolating(ctx, experiment, run,
                                                     tags)
        if unreadable:  # no heatmap without its scales
            raise unreadable[0]
        rows = {}
        stats_content = parsed.get(stats_tag) or {}
        if stats_content.get("kind") == metadata.KIND_VARIABLE_STATS:
            rows = plugin_stats.stat_rows(data.get(stats_tag, []),
                                          parsed[stats_tag])
        return plugin_series.by_step(data.get(heatmap_tag, [])), rows
