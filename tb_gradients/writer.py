"""Writes one window of gradient data as one TensorBoard event.

`write_record` turns a source's `window.source.WindowRecord` into its
summaries, each written by its kind's module in ``format/`` into a
`WindowBatch`; `BatchWriter` writes a whole window's batch as one event with
one operation (a few hundred ``tf.summary.write`` calls cost more time per
window than the statistics themselves).
"""

import weakref

import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.util import tensor_util

from tb_gradients.compat import tensorflow as private
from tb_gradients.format import gates as gates_format
from tb_gradients.format import heatmap
from tb_gradients.format import histogram
from tb_gradients.format import scalars
from tb_gradients.format import steps
from tb_gradients.format import variable_stats
from tb_gradients.window import statistics


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
        variable_stats.write_variable_stats(batch, source, info,
                                            record.stats[i])
        if record.heatmaps[i] is not None:
            encoded, block = record.heatmaps[i]
            heatmap.write_heatmap(batch, source, info, encoded, block,
                                  heatmap_encoding)
        if record.histograms[i] is not None:
            histogram.write_histogram(batch, source, info,
                                      record.histograms[i])
    _write_record_gates(batch, record, variables, names, gate_layers)
    global_values = statistics.global_statistics(
        record.stats, skipped_steps=record.skipped_steps,
        step_table=record.step_table)
    scalars.write_global_scalars(batch, source, global_values)
    if record.step_table is not None:
        steps.write_steps(batch, source, record.step_table)
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
            gate_table, pooled, block = record.gates[index]
            rows.append({"direction": direction, "role": role,
                         "variable": names[index]})
            table.append(gate_table)
            if pooled is not None:
                gates_format.write_gate_heatmap(
                    batch, record.source, names[index], layer.name, kind,
                    pooled, block)
        if rows:
            gates_format.write_gates(batch, record.source, layer.name, kind,
                                    np.stack(table), rows)


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
