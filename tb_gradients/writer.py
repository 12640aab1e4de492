"""Writes one window of gradient data as TensorBoard summaries.

The ``write_*`` functions add the summaries of one series to an
`WindowBatch`; `BatchWriter` writes a whole window's batch as one event with
one operation (a few hundred ``tf.summary.write`` calls cost more time per
epoch than the statistics themselves). The layout is the
contract of docs/FORMAT.md and uses only names from ``metadata``.
"""

import functools
import json
import weakref

import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.util import tensor_util

from tb_gradients.compat import tensorflow as private
from tb_gradients.format import heatmap
from tb_gradients.format import metadata
from tb_gradients.format import timesteps as format_timesteps
from tb_gradients.window import statistics


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


def write_global_scalars(batch, source, global_stats):
    """``gradients/<source>/<name>`` scalars for the Scalars tab."""
    for name in metadata.GLOBAL_STAT_NAMES:
        if source != "training" and name in metadata.TRAINING_ONLY_STATS:
            continue
        value = global_stats.get(name, float("nan"))
        batch.scalar(metadata.scalar_tag(source, name), value)


def write_variable_stats(batch, source, variable, stat_values):
    """One variable's statistics vector (float64, ``VARIABLE_STAT_NAMES``).

    Args:
      variable: dict with ``name``, ``layer``, ``index``, ``shape``.
      stat_values: dict from `window.statistics.variable_statistics`.
    """
    summary_metadata = plugin_metadata(
        metadata.KIND_VARIABLE_STATS, source, window=batch.window,
        description=f"Gradient statistics of {variable['name']}",
        variable=variable["name"], layer=variable["layer"],
        index=variable["index"], shape=list(variable["shape"]),
        stats=list(metadata.VARIABLE_STAT_NAMES))
    vector = np.array([stat_values[name] for name in
                       metadata.VARIABLE_STAT_NAMES], dtype=np.float64)
    batch.tensor(metadata.variable_stats_tag(source, variable["name"]),
                 vector, summary_metadata)


def write_heatmap(batch, source, variable, encoded, block, encoding):
    """Pooled heatmaps of |G|, |C| and D, shape ``(4, rows, cols)``.

    Args:
      encoded: the channels as computed on the device (uint8 codes or
        float32 values, see `window.kernels.tensorflow`).
      block: ``(block_rows, block_cols)`` of the pooling.
    """
    summary_metadata = plugin_metadata(
        metadata.KIND_HEATMAP, source, window=batch.window,
        description=f"Pooled gradient heatmaps of {variable['name']}",
        variable=variable["name"], layer=variable["layer"],
        index=variable["index"], shape=list(variable["shape"]),
        view_shape=list(heatmap.view_shape(variable["shape"])),
        block=[int(b) for b in block],
        channels=list(metadata.HEATMAP_CHANNELS),
        channel_scales=list(metadata.HEATMAP_CHANNEL_SCALES),
        encoding=encoding, decades=metadata.HEATMAP_DECADES)
    batch.tensor(metadata.heatmap_tag(source, variable["name"]), encoded,
                 summary_metadata)


def write_histogram(batch, source, variable, buckets):
    """The histograms plugin's ``(k, 3)`` tensor: the `write_grads` view."""
    summary_metadata = _histogram_metadata(
        display_name=f"{variable['name']} ({source} gradient)",
        description=f"Epoch gradient of {variable['name']} ({source})")
    batch.tensor(metadata.histogram_tag(source, variable["name"]),
                 np.asarray(buckets, np.float64), summary_metadata)


def write_steps(batch, source, step_table):
    """Per-step ``(l2, max_abs)`` rows of one epoch, float32 ``(n, 2)``."""
    summary_metadata = plugin_metadata(
        metadata.KIND_STEPS, source, window=batch.window,
        description="Per-step global gradient L2 norm and max |g|",
        columns=list(metadata.STEP_COLUMNS))
    table = np.asarray(step_table, dtype=np.float32).reshape(-1, 2)
    batch.tensor(metadata.steps_tag(source), table, summary_metadata)


def write_timesteps(batch, source, info, view, samples):
    """Gradient w.r.t. a layer's output: values, and per-timestep norms.

    Args:
      info: from `capture.recurrent.describe`.
      view: from `format_timesteps.timestep_view`.
      samples: number of probe samples.
    """
    fields = dict(info, samples=int(samples), timesteps=int(view["timesteps"]),
                  channels=int(view["channels"]),
                  time_block=int(view["time_block"]),
                  channel_block=int(view["channel_block"]),
                  direction_ranges=view["direction_ranges"])
    summary_metadata = plugin_metadata(
        metadata.KIND_TIMESTEPS, source, window=batch.window,
        description=f"d(loss)/d(output) of layer {info['layer']}", **fields)
    batch.tensor(metadata.timesteps_tag(source, info["layer"]),
                 view["values"], summary_metadata)
    if view["l2"] is None:
        return
    norms_metadata = plugin_metadata(
        metadata.KIND_TIMESTEP_NORMS, source, window=batch.window,
        description=f"Per-timestep gradient norm of layer {info['layer']}",
        channels_axis0=list(metadata.TIMESTEP_NORM_CHANNELS), **fields)
    batch.tensor(metadata.timestep_norms_tag(source, info["layer"]),
                 np.stack([view["l2"], view["valid"]]), norms_metadata)


def write_gates(batch, source, layer_name, kind, table, rows):
    """Per-gate statistics of an LSTM/GRU layer's weight gradients.

    Args:
      table: float64 ``(len(rows), gates, 3)``.
      rows: ``[{"direction", "role", "variable"}]`` naming each row.
    """
    summary_metadata = plugin_metadata(
        metadata.KIND_GATES, source, window=batch.window,
        description=f"Per-gate weight-gradient norms of layer {layer_name}",
        layer=layer_name, recurrent_kind=kind,
        gates=list(metadata.GATES[kind]), rows=rows,
        stats=list(metadata.GATE_STAT_NAMES))
    batch.tensor(metadata.gates_tag(source, layer_name),
                 np.asarray(table, np.float64), summary_metadata)


def write_gate_heatmap(batch, source, variable, layer_name, kind, pooled,
                       block):
    """Pooled mean |g| of each gate of one fused recurrent weight (float32)."""
    summary_metadata = plugin_metadata(
        metadata.KIND_GATE_HEATMAP, source, window=batch.window,
        description=f"Per-gate gradient heatmaps of {variable}",
        variable=variable, layer=layer_name, recurrent_kind=kind,
        gates=list(metadata.GATES[kind]), block=[int(b) for b in block])
    batch.tensor(metadata.gate_heatmap_tag(source, variable),
                 np.asarray(pooled, np.float32), summary_metadata)


def write_findings(batch, findings_list, where):
    """The run's findings so far as a Markdown table (TensorBoard's Text
    tab, tag `metadata.FINDINGS_TAG`), written when new ones appear.

    Args:
      findings_list: `findings.Finding`s, most severe first.
      where: what the summary step is (``"epoch"`` or ``"step"``), for the
        heading.
    """
    rows = ["| severity | kind | layer | variable | epoch | step | message |",
            "|---|---|---|---|---|---|---|"]
    for finding in findings_list:
        cells = [finding.severity, finding.kind, finding.layer or "",
                 finding.variable or "",
                 "" if finding.epoch is None else str(finding.epoch),
                 "" if finding.step is None else str(finding.step),
                 finding.message]
        rows.append("| " + " | ".join(
            cell.replace("|", "\\|").replace("\n", " ") for cell in cells)
            + " |")
    text = (f"Gradient findings up to this {where} "
            "(docs/FINDINGS.md):\n\n" + "\n".join(rows))
    batch.tensor(metadata.FINDINGS_TAG,
                 np.array(text.encode("utf-8"), dtype=object),
                 text_metadata.create_summary_metadata(
                     display_name="Gradient findings",
                     description="What the gradients say is wrong, and "
                                 "where it started"))


def write_record(batch, record, variables, names, heatmap_encoding,
                 gate_layers=()):
    """Every summary of one source's window (`window.source.WindowRecord`).

    Args:
      variables: the source's Keras variables, in the record's order.
      names: their display names (`callback._unique_names`).
      heatmap_encoding: ``"uint8"`` or ``"float32"``.
      gate_layers: ``(layer, kind, [(direction, role, variable)])`` of the
        recurrent layers whose fused weights are broken down by gate.

    Returns:
      ``(described, global_values)``: per variable ``{"name", "layer",
      "index", "shape"}``, and the whole-model figures written.
    """
    source = record.source
    described = []
    for i, (variable, name) in enumerate(zip(variables, names)):
        info = {"name": name, "layer": name.rsplit("/", 1)[0], "index": i,
                "shape": tuple(int(d) for d in variable.shape)}
        described.append(dict(info, shape=list(info["shape"])))
        write_variable_stats(batch, source, info, record.stats[i])
        if record.heatmaps[i] is not None:
            encoded, block = record.heatmaps[i]
            write_heatmap(batch, source, info, encoded, block,
                          heatmap_encoding)
        if record.histograms[i] is not None:
            write_histogram(batch, source, info, record.histograms[i])
    _write_record_gates(batch, record, variables, names, gate_layers)
    global_values = statistics.global_statistics(
        record.stats, skipped_steps=record.skipped_steps,
        step_table=record.step_table)
    write_global_scalars(batch, source, global_values)
    if record.step_table is not None:
        write_steps(batch, source, record.step_table)
    return described, global_values


def _write_record_gates(batch, record, variables, names, gate_layers):
    """Per-gate breakdown of LSTM/GRU weight gradients."""
    by_id = {id(v): i for i, v in enumerate(variables)}
    for layer, kind, weights in gate_layers:
        rows, table = [], []
        for direction, role, variable in weights:
            index = by_id.get(id(variable))
            if index is None or index not in record.gates:
                continue
            gate_table, heatmap, block = record.gates[index]
            rows.append({"direction": direction, "role": role,
                         "variable": names[index]})
            table.append(gate_table)
            if heatmap is not None:
                write_gate_heatmap(batch, record.source, names[index],
                                   layer.name, kind, heatmap, block)
        if rows:
            write_gates(batch, record.source, layer.name, kind,
                        np.stack(table), rows)


def write_timestep_gradients(batch, layer_infos, results, max_timesteps,
                             max_channels):
    """The probe's timestep series of each recurrent layer, pooled.

    Args:
      layer_infos: per layer, `capture.recurrent.describe`.
      results: per layer, ``(gradient, mask)`` from the timestep capture.
    """
    for info, (gradient, mask) in zip(layer_infos, results):
        view = format_timesteps.timestep_view(
            gradient, mask=mask, max_timesteps=max_timesteps,
            max_channels=max_channels, directions=info["direction_count"])
        write_timesteps(batch, "probe", info, view, gradient.shape[0])


class WindowBatch:
    """The summaries of one window, collected before they are written.

    Args:
      window: ``"epoch"`` or the window's length in optimizer steps, written
        into every plugin series' metadata (FORMAT.md, version 2).
    """

    def __init__(self, window="epoch"):
        self.window = window
        self.entries = []

    def tensor(self, tag, value, summary_metadata):
        self.entries.append((tag, np.asarray(value), summary_metadata))

    def scalar(self, tag, value):
        self.entries.append((tag, np.asarray(value, dtype=np.float32), None))


# (`compat.tensorflow`: the summary writer's private resource handle)
WRITER_RESOURCE_ATTRIBUTE = private.SUMMARY_WRITER_RESOURCE


def _writer_resource(writer):
    resource = getattr(writer, WRITER_RESOURCE_ATTRIBUTE, None)
    if resource is None:
        raise RuntimeError(
            f"tb_gradients cannot write with this summary writer: "
            f"{type(writer).__name__} has no attribute "
            f"{WRITER_RESOURCE_ATTRIBUTE!r} (checked with TensorFlow "
            f"{private.TENSORFLOW_VERSIONS_CHECKED}).")
    return resource


class BatchWriter:
    """Writes a `WindowBatch` as one event, with one operation.

    The batch's summaries are serialised on the host into one ``Summary``
    protocol buffer (they are small: statistics, pooled heatmaps,
    histograms) and handed to the writer with ``WriteRawProtoSummary``: no
    graph to trace, and one call per window whatever the number of
    variables. TensorBoard's readers take every value of the event. As
    TensorFlow's own writer does, a tag's metadata is written with its
    first value in each event file only.
    """

    def __init__(self):
        self._described = weakref.WeakKeyDictionary()

    def write(self, writer, batch, step):
        if not batch.entries:
            return
        described = self._described.setdefault(writer, set())
        proto = summary_pb2.Summary()
        for tag, value, meta in batch.entries:
            entry = proto.value.add(tag=tag)
            if tag not in described:
                entry.metadata.CopyFrom(_SCALAR_METADATA if meta is None
                                        else meta)
                described.add(tag)
            entry.tensor.CopyFrom(tensor_util.make_tensor_proto(value))
        tf.raw_ops.WriteRawProtoSummary(
            writer=_writer_resource(writer),
            step=tf.constant(step, tf.int64),
            tensor=tf.constant(proto.SerializeToString()))


_SCALAR_METADATA = scalar_metadata.create_summary_metadata(
    display_name=None, description=None)
