"""The ``gates`` and ``gate_heatmap`` kinds: an LSTM's or GRU's fused
weight gradients broken down by gate, as a table of per-gate statistics per
weight and a pooled mean-|g| heatmap per gate."""

import numpy as np

from tb_gradients.format import decoding
from tb_gradients.format import metadata

# Columns of the per-gate statistics (last axis of the gates tensor).
GATE_STAT_NAMES = ("l2", "mean_abs", "max_abs")
# Gate order of Keras's fused recurrent weights (last axis), per kind.
GATES = {
    "LSTM": ("input", "forget", "cell", "output"),
    "GRU": ("update", "reset", "candidate"),
}
GATE_WEIGHT_ROLES = ("kernel", "recurrent_kernel", "bias")


def write_gates(batch, source, layer_name, kind, table, rows):
    """Per-gate statistics of an LSTM/GRU layer's weight gradients.

    Args:
      table: float64 ``(len(rows), gates, 3)``.
      rows: ``[{"direction", "role", "variable"}]`` naming each row.
    """
    summary_metadata = metadata.plugin_metadata(
        metadata.KIND_GATES, source, window=batch.window,
        description=f"Per-gate weight-gradient norms of layer {layer_name}",
        layer=layer_name, recurrent_kind=kind,
        gates=list(GATES[kind]), rows=rows,
        stats=list(GATE_STAT_NAMES))
    batch.tensor(metadata.gates_tag(source, layer_name),
                 np.asarray(table, np.float64), summary_metadata)


def write_gate_heatmap(batch, source, variable, layer_name, kind, pooled,
                       block):
    """Pooled mean |g| of each gate of one fused recurrent weight (float32)."""
    summary_metadata = metadata.plugin_metadata(
        metadata.KIND_GATE_HEATMAP, source, window=batch.window,
        description=f"Per-gate gradient heatmaps of {variable}",
        variable=variable, layer=layer_name, recurrent_kind=kind,
        gates=list(GATES[kind]), block=[int(b) for b in block])
    batch.tensor(metadata.gate_heatmap_tag(source, variable),
                 np.asarray(pooled, np.float32), summary_metadata)


def gate_columns(content):
    """``(gate names, statistic names)`` of a ``gates`` or ``gate_heatmap``
    content; the statistics default to ``GATE_STAT_NAMES``.

    Raises:
      decoding.ReadError: When ``gates`` is not a non-empty list of
        names.
    """
    gates, names = content.get("gates"), content.get("stats")
    if not (isinstance(gates, list) and gates
            and all(isinstance(g, str) for g in gates)):
        raise decoding.ReadError(
            "expected metadata field 'gates' to be a list of names, "
            "found %r" % (gates,))
    if not (isinstance(names, list) and names
            and all(isinstance(n, str) for n in names)):
        names = list(GATE_STAT_NAMES)
    return list(gates), list(names)


def gate_rows(content):
    """The ``rows`` of a ``gates`` content: ``[{direction, role, variable}]``.

    Raises:
      decoding.ReadError: When the field is not a list of such
        objects.
    """
    rows = content.get("rows")
    if not isinstance(rows, list) or not all(
            isinstance(row, dict) and all(
                isinstance(row.get(key), str)
                for key in ("direction", "role", "variable"))
            for row in rows):
        raise decoding.ReadError(
            "expected metadata field 'rows' to be a list of {direction, "
            "role, variable} objects, found %r" % (rows,))
    return [{key: row[key] for key in ("direction", "role", "variable")}
            for row in rows]


def decode_gates(content, value):
    """One stored ``gates`` table, checked: float ``(rows, gates, stats)``
    as its content announces (`gate_rows`, `gate_columns`), as float64.

    Raises:
      decoding.ReadError: for malformed content, or any other shape or
        dtype.
    """
    gates, names = gate_columns(content)
    shape = (len(gate_rows(content)), len(gates), len(names))
    return decoding.checked(
        value, f"a float table of shape {shape!r}", ndim=3,
        shape=shape).astype(np.float64, copy=False)


def decode_gate_heatmap(content, value):
    """One stored ``gate_heatmap`` tensor, checked: float ``(gates, rows,
    cols)`` with one plane per gate of its content, as float32.

    Raises:
      decoding.ReadError: for malformed content, or any other shape or
        dtype.
    """
    gates = len(gate_columns(content)[0])
    return decoding.checked(
        value, f"a float tensor of shape ({gates}, rows, cols)", ndim=3,
        shape=(gates, None, None)).astype(np.float32, copy=False)
