"""The ``gates`` and ``gate_heatmap`` kinds: an LSTM's or GRU's fused
weight gradients broken down by gate, as a table of per-gate statistics per
weight and a pooled mean-|g| heatmap per gate."""

import numpy as np

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
