"""Writes one epoch of gradient data as TensorBoard summaries.

Must be called with a default summary writer (``writer.as_default()``); the
layout is the contract of docs/FORMAT.md and uses only names from
``metadata``.
"""

import functools
import json

import numpy as np
import tensorflow as tf
from tensorboard.plugins.histogram import metadata as histogram_metadata

from tb_gradients import metadata
from tb_gradients import stats


@functools.lru_cache(maxsize=4096)
def _cached_metadata(kind, source, description, fields_json):
    return metadata.create_summary_metadata(kind, source, description,
                                            **json.loads(fields_json))


def plugin_metadata(kind, source, description="", **fields):
    """`metadata.create_summary_metadata`, built once per distinct series.

    The same series gets the same metadata every epoch; building and
    serialising it once saves Python work at every epoch's end.
    """
    return _cached_metadata(kind, source, description,
                            json.dumps(fields, sort_keys=True))


@functools.lru_cache(maxsize=4096)
def _histogram_metadata(display_name, description):
    return histogram_metadata.create_summary_metadata(
        display_name=display_name, description=description)


def write_global_scalars(source, global_stats, step):
    """``gradients/<source>/<name>`` scalars for the Scalars tab."""
    for name in metadata.GLOBAL_STAT_NAMES:
        if source != "training" and name in metadata.TRAINING_ONLY_STATS:
            continue
        value = global_stats.get(name, float("nan"))
        tf.summary.scalar(metadata.scalar_tag(source, name), value, step=step)


def write_variable_stats(source, variable, stat_values, step):
    """One variable's statistics vector (float64, ``VARIABLE_STAT_NAMES``).

    Args:
      variable: dict with ``name``, ``layer``, ``index``, ``shape``.
      stat_values: dict from `stats.variable_statistics`.
    """
    summary_metadata = plugin_metadata(
        metadata.KIND_VARIABLE_STATS, source,
        description=f"Gradient statistics of {variable['name']}",
        variable=variable["name"], layer=variable["layer"],
        index=variable["index"], shape=list(variable["shape"]),
        stats=list(metadata.VARIABLE_STAT_NAMES))
    vector = np.array([stat_values[name] for name in
                       metadata.VARIABLE_STAT_NAMES], dtype=np.float64)
    tf.summary.write(metadata.variable_stats_tag(source, variable["name"]),
                     tf.constant(vector), step=step, metadata=summary_metadata)


def encode_heatmap(channels, stat_values, encoding):
    """Encodes pooled channels: uint8 log codes or float32 values."""
    if encoding == "float32":
        return channels.astype(np.float32)
    return np.stack([
        stats.encode_log_uint8(channel, stat_values[scale])
        for channel, scale in zip(channels, metadata.HEATMAP_CHANNEL_SCALES)
    ])


def write_heatmap(source, variable, gradient, accumulated, accumulated_abs,
                  stat_values, max_cells, encoding, step):
    """Pooled heatmaps of |G|, |C| and D, shape ``(4, rows, cols)``."""
    channels, block = stats.heatmap_channels(gradient, accumulated,
                                             accumulated_abs, max_cells)
    summary_metadata = plugin_metadata(
        metadata.KIND_HEATMAP, source,
        description=f"Pooled gradient heatmaps of {variable['name']}",
        variable=variable["name"], layer=variable["layer"],
        index=variable["index"], shape=list(variable["shape"]),
        view_shape=list(stats.view_shape(variable["shape"])),
        block=list(block), channels=list(metadata.HEATMAP_CHANNELS),
        channel_scales=list(metadata.HEATMAP_CHANNEL_SCALES),
        encoding=encoding, decades=metadata.HEATMAP_DECADES)
    tf.summary.write(metadata.heatmap_tag(source, variable["name"]),
                     tf.constant(encode_heatmap(channels, stat_values, encoding)),
                     step=step, metadata=summary_metadata)


def write_histogram(source, variable, gradient, bucket_count, step):
    """The histograms plugin's ``(k, 3)`` tensor: the `write_grads` view."""
    summary_metadata = _histogram_metadata(
        display_name=f"{variable['name']} ({source} gradient)",
        description=f"Epoch gradient of {variable['name']} ({source})")
    buckets = stats.histogram_buckets(gradient, bucket_count)
    tf.summary.write(metadata.histogram_tag(source, variable["name"]),
                     tf.constant(buckets, tf.float64), step=step,
                     metadata=summary_metadata)


def write_steps(source, step_table, step):
    """Per-step ``(l2, max_abs)`` rows of one epoch, float32 ``(n, 2)``."""
    summary_metadata = plugin_metadata(
        metadata.KIND_STEPS, source,
        description="Per-step global gradient L2 norm and max |g|",
        columns=list(metadata.STEP_COLUMNS))
    table = np.asarray(step_table, dtype=np.float32).reshape(-1, 2)
    tf.summary.write(metadata.steps_tag(source), tf.constant(table), step=step,
                     metadata=summary_metadata)


def write_timesteps(source, info, view, samples, step):
    """Gradient w.r.t. a layer's output: values, and per-timestep norms.

    Args:
      info: from `timesteps.describe`.
      view: from `stats.timestep_view`.
      samples: number of probe samples.
    """
    fields = dict(info, samples=int(samples), timesteps=int(view["timesteps"]),
                  channels=int(view["channels"]),
                  time_block=int(view["time_block"]),
                  channel_block=int(view["channel_block"]),
                  direction_ranges=view["direction_ranges"])
    summary_metadata = plugin_metadata(
        metadata.KIND_TIMESTEPS, source,
        description=f"d(loss)/d(output) of layer {info['layer']}", **fields)
    tf.summary.write(metadata.timesteps_tag(source, info["layer"]),
                     tf.constant(view["values"]), step=step,
                     metadata=summary_metadata)
    if view["l2"] is None:
        return
    norms_metadata = plugin_metadata(
        metadata.KIND_TIMESTEP_NORMS, source,
        description=f"Per-timestep gradient norm of layer {info['layer']}",
        channels_axis0=list(metadata.TIMESTEP_NORM_CHANNELS), **fields)
    tf.summary.write(metadata.timestep_norms_tag(source, info["layer"]),
                     tf.constant(np.stack([view["l2"], view["valid"]])),
                     step=step, metadata=norms_metadata)


def write_gates(source, layer_name, kind, table, rows, step):
    """Per-gate statistics of an LSTM/GRU layer's weight gradients.

    Args:
      table: float64 ``(len(rows), gates, 3)``.
      rows: ``[{"direction", "role", "variable"}]`` naming each row.
    """
    summary_metadata = plugin_metadata(
        metadata.KIND_GATES, source,
        description=f"Per-gate weight-gradient norms of layer {layer_name}",
        layer=layer_name, recurrent_kind=kind,
        gates=list(stats.GATES[kind]), rows=rows,
        stats=list(metadata.GATE_STAT_NAMES))
    tf.summary.write(metadata.gates_tag(source, layer_name),
                     tf.constant(np.asarray(table, np.float64)), step=step,
                     metadata=summary_metadata)


def write_gate_heatmap(source, variable, layer_name, kind, gradient,
                       max_cells, step):
    """Pooled mean |g| of each gate of one fused recurrent weight (float32)."""
    gates = stats.GATES[kind]
    pooled, block = stats.gate_heatmaps(gradient, len(gates),
                                        max(1, max_cells // len(gates)))
    summary_metadata = plugin_metadata(
        metadata.KIND_GATE_HEATMAP, source,
        description=f"Per-gate gradient heatmaps of {variable}",
        variable=variable, layer=layer_name, recurrent_kind=kind,
        gates=list(gates), block=list(block))
    tf.summary.write(metadata.gate_heatmap_tag(source, variable),
                     tf.constant(pooled.astype(np.float32)), step=step,
                     metadata=summary_metadata)
