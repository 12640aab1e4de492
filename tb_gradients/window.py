"""One gradient source's accumulated state and its window end.

`SourceWindows` owns, for one source (``training`` or ``probe``) of one
callback, the accumulated state of every variable (`device_stats`, in
groups of equal layout) and runs the compiled window-end call. What comes
back to the host is small (reductions, encoded pooled heatmaps, histogram
counts, gate tables); the statistics are computed from it with
`stats.variable_statistics` and returned as a `WindowRecord` for `summary`.
"""

import numpy as np
import tensorflow as tf

from tb_gradients import device_stats
from tb_gradients import stats


def _device_of(variable):
    """Where a (Keras or tf) variable lives, for colocating its state."""
    plain = getattr(variable, "value", variable) if hasattr(
        variable, "path") else variable
    return getattr(plain, "device", None) or None


def _kinds(arguments):
    return tuple(type(a).__name__ for a in tf.nest.flatten(arguments))


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
        self.groups = device_stats.group_layouts(self.layouts)
        self.states = []
        for number, group in enumerate(self.groups):
            with tf.device(_device_of(self.variables[group[0]])):
                self.states.append(device_stats.GroupState(
                    self.layouts[group[0]], len(group),
                    f"{source}_{number}"))
        # variable index -> (group number, row in the group)
        self._position = {index: (number, row)
                          for number, group in enumerate(self.groups)
                          for row, index in enumerate(group)}
        self._order = [index for group in self.groups for index in group]
        self._sizes = np.array([layout.size for layout in self.layouts],
                               np.float64)

    @property
    def key(self):
        """Identifies the variables this state belongs to."""
        return tuple(id(v) for v in self.variables)

    def end_window(self, gradients, window_scalars=None, probe_batches=0,
                   record=True):
        """Adds the window gradients to the state; returns a `WindowRecord`.

        Args:
          gradients: one tensor (or window-sum variable) per variable.
          window_scalars: per variable, the ``WINDOW_SCALARS`` variables
            (training); None for the probe.
          probe_batches: the probe's ``steps`` figure (number of batches).
          record: False for a window that is not logged: the state is
            updated, nothing is computed for the host.
        """
        gradients = list(gradients)
        arguments = (gradients, [s.variables() for s in self.states],
                     list(window_scalars or []))
        function = device_stats.window_end_function(
            self.layouts, self.groups, record, _kinds(arguments))
        out = function(*arguments)
        if not record:
            return None
        return self._host_record(out, gradients, window_scalars is not None,
                                 probe_batches)

    def _host_record(self, out, gradients, training, probe_batches):
        count = len(self.variables)
        reductions = np.empty((count, len(stats.REDUCTIONS)))
        reductions[self._order] = out["reductions"].numpy()
        histograms = None
        if "histograms" in out:
            histograms = np.empty((count, self.layouts[0].buckets))
            histograms[self._order] = out["histograms"].numpy()
        heatmaps = [None] * count
        if "heatmaps" in out:
            flat, offset = out["heatmaps"].numpy(), 0
            for index in self._order:
                layout = self.layouts[index]
                if layout.heatmap:
                    cells = 4 * layout.cells
                    heatmaps[index] = flat[offset:offset + cells].reshape(
                        (4,) + layout.grid)
                    offset += cells
        self._mask_non_finite(reductions, histograms, heatmaps, gradients)
        if training:
            scalars = out["window_scalars"].numpy()
            per_variable = stats.variable_statistics(
                reductions, self._sizes, scalars[:, 0], scalars[:, 1],
                scalars[:, 2])
        else:
            per_variable = stats.variable_statistics(
                reductions, self._sizes, np.full(count, float(probe_batches)))
        result = WindowRecord(self.source)
        result.stats = per_variable
        for index, layout in enumerate(self.layouts):
            result.heatmaps.append(None if heatmaps[index] is None
                                   else (heatmaps[index], layout.block))
            result.histograms.append(
                None if histograms is None else device_stats.histogram_rows(
                    reductions[index, stats.REDUCTIONS.index("min")],
                    reductions[index, stats.REDUCTIONS.index("max")],
                    histograms[index]))
        for key, values in out.get("gates", {}).items():
            index = self.groups[int(key)][0]
            table = values[0].numpy()
            heatmap = values[1].numpy() if len(values) > 1 else None
            result.gates[index] = (table, heatmap,
                                   self.layouts[index].gate_block)
        return result

    def _mask_non_finite(self, reductions, histograms, heatmaps, gradients):
        """Recomputes the variables whose G or C held NaN or Inf.

        The main pass does not mask (that would cost a pass over every
        variable every window); its sums come out non-finite exactly for
        these variables, which are then reduced again over finite elements.
        """
        checked = [stats.REDUCTIONS.index(name) for name in
                   ("l1", "sq", "accumulated_l1", "accumulated_sq")]
        flagged = np.flatnonzero(~np.isfinite(reductions[:, checked]).all(
            axis=1))
        for index in flagged:
            number, row = self._position[int(index)]
            layout = self.layouts[index]
            arguments = (gradients[index], self.states[number].variables(),
                         tf.constant(row, tf.int32))
            function = device_stats.masked_reductions_function(
                layout, _kinds(arguments))
            out = function(*arguments)
            reductions[index] = out["reductions"].numpy()
            if histograms is not None:
                histograms[index] = out["histogram"].numpy()
            if heatmaps[index] is not None:
                heatmaps[index] = out["heatmap"].numpy().reshape(
                    (4,) + layout.grid)
