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
from tensorboard.compat.proto import tensor_pb2
from tensorboard.compat.proto import tensor_shape_pb2
from tensorboard.compat.proto import types_pb2
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


def describe(variables, names):
    """Per variable ``{"name", "layer", "index", "shape"}`` (``shape`` a
    list, as in the summaries' metadata): built once per source, not per
    window (a Keras variable's shape is a Python call)."""
    return [{"name": name, "layer": name.rsplit("/", 1)[0], "index": i,
             "shape": [int(d) for d in variable.shape]}
            for i, (variable, name) in enumerate(zip(variables, names))]


def write_record(batch, record, variables, names, heatmap_encoding,
                 gate_layers=(), described=None):
    """Every summary of one source's window (`window.source.WindowRecord`).

    Args:
      variables: the source's Keras variables, in the record's order.
      names: their display names (`callback._unique_names`).
      heatmap_encoding: ``"uint8"`` or ``"float32"``.
      gate_layers: ``(layer, kind, [(direction, role, variable)])`` of the
        recurrent layers whose fused weights are broken down by gate.
      described: `describe` of ``variables`` and ``names`` (computed when
        not given).

    Returns:
      ``(described, global_values)``: `describe`'s list, and the
      whole-model figures written.
    """
    source = record.source
    if described is None:
        described = describe(variables, names)
    for i, info in enumerate(described):
        variable_stats.write_variable_stats(batch, source, info,
                                            record.stats_matrix[i])
        if record.heatmaps[i] is not None:
            encoded, block = record.heatmaps[i]
            heatmap.write_heatmap(batch, source, info, encoded, block,
                                  heatmap_encoding)
        if record.histograms[i] is not None:
            histogram.write_histogram(batch, source, info,
                                      record.histograms[i])
    _write_record_gates(batch, record, variables, names, gate_layers)
    global_values = statistics.global_statistics(
        record.columns, skipped_steps=record.skipped_steps,
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
        """Adds one summary. ``summary_metadata``: a ``SummaryMetadata``,
        or a function of no arguments that builds it: it is only needed
        with a tag's first value in an event file, and building it for
        every variable at every window costs more than the window's
        statistics on a model of a few thousand variables."""
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
                if meta is None:
                    meta = _SCALAR_METADATA
                entry.metadata.CopyFrom(meta() if callable(meta) else meta)
                described.add(tag)
            entry.tensor.CopyFrom(tensor_proto(value))
        tf.raw_ops.WriteRawProtoSummary(
            writer=_writer_resource(writer),
            step=tf.constant(step, tf.int64),
            tensor=tf.constant(proto.SerializeToString()))


# numpy dtypes written as raw bytes (``tensor_content``), as
# `tensor_util.make_tensor_proto` writes them
_CONTENT_DTYPES = {
    np.dtype(np.float64): types_pb2.DT_DOUBLE,
    np.dtype(np.float32): types_pb2.DT_FLOAT,
    np.dtype(np.int32): types_pb2.DT_INT32,
    np.dtype(np.int64): types_pb2.DT_INT64,
    np.dtype(np.uint8): types_pb2.DT_UINT8,
}


def tensor_proto(value):
    """``tensor_util.make_tensor_proto(value)`` (the same message), built
    directly for the numeric arrays of a window: TensorBoard's general
    function checks and converts its input at about 20 microseconds a
    call, three calls per variable per window."""
    dtype = _CONTENT_DTYPES.get(value.dtype)
    if dtype is None or value.size <= 1:
        return tensor_util.make_tensor_proto(value)
    return tensor_pb2.TensorProto(
        dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d))
                 for d in value.shape]),
        tensor_content=value.tobytes())


_SCALAR_METADATA = scalar_metadata.create_summary_metadata(
    display_name=None, description=None)
