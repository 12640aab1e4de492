"""One gradient source's accumulated state and its window end.

`SourceWindows` owns, for one source (``training`` or ``probe``) of one
callback, the per-variable `device_stats.AccumulatedState` and runs the
compiled window-end call over all variables. What comes back to the host is
small (statistics, pooled heatmaps, histogram counts, gate tables) and is
returned as a `WindowRecord` ready for `summary`.
"""

import math

import numpy as np
import tensorflow as tf

from tb_gradients import device_stats


def _device_of(variable):
    """Where a (Keras or tf) variable lives, for colocating its state."""
    plain = getattr(variable, "value", variable) if hasattr(
        variable, "path") else variable
    return getattr(plain, "device", None) or None


class WindowRecord:
    """The host-side results of one window of one source.

    Attributes:
      source: ``"training"`` or ``"probe"``.
      stats: per variable, a dict ``VARIABLE_STAT_NAMES`` (plus, training,
        the noise-scale terms) -> float.
      heatmaps: per variable, ``(encoded (4, rows, cols), block)`` or None.
      histograms: per variable, ``(k, 3)`` rows or None.
      gates: ``{variable index: (table (gates, 3), heatmap or None,
        block)}``.
      step_table: ``(n, 2)`` per-step rows (training) or None.
      skipped_steps: steps the loss-scale optimizer skipped.
    """

    def __init__(self, source):
        self.source = source
        self.stats = []
        self.heatmaps = []
        self.histograms = []
        self.gates = {}
        self.step_table = None
        self.skipped_steps = 0.0


class SourceWindows:
    """Accumulated state of one source, and its window-end call.

    Args:
      source: ``"training"`` or ``"probe"``.
      variables: the Keras variables, in the order gradients are given.
      heatmap_cells: cells per heatmap (0: no heatmaps).
      heatmap_encoding: ``"uint8"`` or ``"float32"``.
      histogram_buckets: buckets per histogram (0: no histograms).
      gate_counts: ``{variable index: fused gate count}``.
    """

    def __init__(self, source, variables, heatmap_cells, heatmap_encoding,
                 histogram_buckets, gate_counts=None):
        self.source = source
        self.variables = list(variables)
        gate_counts = gate_counts or {}
        pool_cells = heatmap_cells or device_stats.DEFAULT_POOL_CELLS
        self.layouts = []
        for index, variable in enumerate(self.variables):
            gates = gate_counts.get(index, 0)
            self.layouts.append(device_stats.VariableLayout(
                variable.shape, pool_cells, bool(heatmap_cells),
                heatmap_encoding, histogram_buckets, gate_count=gates,
                gate_cells=max(1, heatmap_cells // gates)
                if gates and heatmap_cells else 0))
        self.states = []
        for index, (variable, layout) in enumerate(zip(self.variables,
                                                       self.layouts)):
            with tf.device(_device_of(variable)):
                self.states.append(device_stats.AccumulatedState(
                    layout, f"{source}_{index}"))
        self._probe_scalars = None

    @property
    def key(self):
        """Identifies the variables this state belongs to."""
        return tuple(id(v) for v in self.variables)

    def end_window(self, gradients, window_scalars=None, probe_batches=0,
                   record=True):
        """Adds the window gradients to the state; returns a `WindowRecord`.

        Args:
          gradients: one tensor (or window-sum variable) per variable.
          window_scalars: per variable, the ``WINDOW_SCALARS`` (training);
            None for the probe.
          probe_batches: the probe's ``steps`` figure (number of batches).
          record: False for a window that is not logged: the state is
            updated, nothing is computed for the host.
        """
        training = window_scalars is not None
        if not training:
            window_scalars = [tf.constant(
                [float(probe_batches), math.nan, math.nan], tf.float64)
            ] * len(self.variables)
        arguments = (list(gradients), [s.variables() for s in self.states],
                     list(window_scalars))
        function = device_stats.window_end_function(
            self.layouts, training, record, argument_types=tuple(
                type(a).__name__ for a in tf.nest.flatten(arguments)))
        out = function(*arguments)
        if not record:
            return None
        return self._host_record(out, training)

    def _host_record(self, out, training):
        result = WindowRecord(self.source)
        columns = device_stats.STAT_COLUMNS
        for row in out["stats"].numpy():
            values = dict(zip(columns, row.tolist()))
            if not training:
                for name in device_stats.EXTRA_COLUMNS:
                    values.pop(name)
            result.stats.append(values)
        heatmaps = out["heatmaps"].numpy() if "heatmaps" in out else None
        bounds = counts = None
        if "histogram_counts" in out:
            bounds = out["histogram_bounds"].numpy()
            counts = out["histogram_counts"].numpy()
        offset = 0
        for index, layout in enumerate(self.layouts):
            if layout.heatmap:
                cells = 4 * layout.grid[0] * layout.grid[1]
                encoded = heatmaps[offset:offset + cells].reshape(
                    (4,) + layout.grid)
                offset += cells
                result.heatmaps.append((encoded, layout.block))
            else:
                result.heatmaps.append(None)
            if counts is not None:
                result.histograms.append(device_stats.histogram_rows(
                    bounds[index, 0], bounds[index, 1], counts[index]))
            else:
                result.histograms.append(None)
        for key, values in out.get("gates", {}).items():
            index = int(key)
            table = values[0].numpy()
            heatmap = values[1].numpy() if len(values) > 1 else None
            result.gates[index] = (table, heatmap,
                                   self.layouts[index].gate_block)
        return result

