"""One gradient source's accumulated state and its window end.

`SourceWindows` owns, for one source (``training`` or ``probe``) of one
callback, the accumulated state of every variable (in groups of equal
layout, `window.layout`) and runs the window end through the backend's
kernel (`window.kernels`), which keeps the state on the device. What comes
back to the host is small (reductions, encoded pooled heatmaps, histogram
counts, gate tables); the statistics are computed from it with
`window.statistics.variable_columns` and returned as a `WindowRecord`
for `writer`. Backend-neutral: no framework's ops here.
"""

import keras
import numpy as np

from tb_gradients.format import histogram
from tb_gradients.window import kernels
from tb_gradients.window import layout as layouts
from tb_gradients.window import statistics


def variable_layouts(variables, heatmap_cells, heatmap_encoding,
                     histogram_buckets, gate_counts=None):
    """Each variable's `window.layout.VariableLayout` (arguments as
    `SourceWindows`')."""
    gate_counts = gate_counts or {}
    pool_cells = heatmap_cells or layouts.DEFAULT_POOL_CELLS
    result = []
    for index, variable in enumerate(variables):
        gates = gate_counts.get(index, 0)
        result.append(layouts.VariableLayout(
            variable.shape, pool_cells, bool(heatmap_cells),
            heatmap_encoding, histogram_buckets, gate_count=gates,
            gate_cells=max(1, heatmap_cells // gates)
            if gates and heatmap_cells else 0))
    return result


def prepare(variables, heatmap_cells, heatmap_encoding, histogram_buckets,
            gate_counts=None, groups=None):
    """Starts the one-time work of the window ends of a `SourceWindows` of
    these arguments before it exists (`WindowKernel.prepare`: on JAX, the
    compilation of each group layout's step, overlapping the first
    window's training), without creating any state."""
    variables = list(variables)
    found = variable_layouts(variables, heatmap_cells, heatmap_encoding,
                             histogram_buckets, gate_counts)
    groups = groups or layouts.group_by_shape([v.shape for v in variables])
    kernels.for_backend(keras.backend.backend()).prepare(
        [(found[group[0]], len(group), variables[group[0]])
         for group in groups], variables)


class WindowRecord:
    """The host-side results of one window of one source.

    Attributes:
      source: ``"training"`` or ``"probe"``.
      columns: statistic name (``VARIABLE_STAT_NAMES`` and, training,
        the noise-scale terms) -> ``(variables,)`` float64.
      stats: per variable, a dict of the same -> float.
      stats_matrix: the same, float64 ``(variables, VARIABLE_STAT_NAMES)``
        (the written vectors: one row per variable, no per-variable
        conversion at each window).
      heatmaps: per variable, ``(encoded (4, rows, cols), block)`` or None.
      histograms: per variable, ``(k, 3)`` rows or None.
      gates: ``{variable index: (table (gates, 3), heatmap or None,
        block)}``.
      step_table: ``(n, 2)`` per-step rows (training) or None.
      skipped_steps: steps the loss-scale optimizer skipped.
    """

    def __init__(self, source):
        self.source = source
        self.columns = None
        self._stats = None
        self.stats_matrix = None
        self.heatmaps = []
        self.histograms = []
        self.gates = {}
        self.step_table = None
        self.skipped_steps = 0.0

    @property
    def stats(self):
        """Per variable, a dict of its statistics (built from ``columns``
        when first asked for: the writer and the findings read the
        columns and ``stats_matrix``, a few thousand dicts per window
        cost more than they do)."""
        if self._stats is None:
            self._stats = ([] if self.columns is None
                           else statistics.as_dicts(self.columns))
        return self._stats


class SourceWindows:
    """Accumulated state of one source, and its window-end call.

    Args:
      source: ``"training"`` or ``"probe"``.
      variables: the Keras variables, in the order gradients are given.
      heatmap_cells: cells per heatmap (0: no heatmaps).
      heatmap_encoding: ``"uint8"`` or ``"float32"``.
      histogram_buckets: buckets per histogram (0: no histograms).
      gate_counts: ``{variable index: fused gate count}``.
      groups: variable indices stacked together (all of one shape), as
        the training capture keeps them; by default `group_by_shape`.
    """

    def __init__(self, source, variables, heatmap_cells, heatmap_encoding,
                 histogram_buckets, gate_counts=None, groups=None):
        self.source = source
        self.variables = list(variables)
        self.kernel = kernels.for_backend(keras.backend.backend())
        self.layouts = variable_layouts(self.variables, heatmap_cells,
                                        heatmap_encoding, histogram_buckets,
                                        gate_counts)
        self.groups = groups or layouts.group_by_shape(
            [v.shape for v in self.variables])
        self.states = [self.kernel.new_state(self.layouts[group[0]],
                                             len(group),
                                             self.variables[group[0]])
                       for group in self.groups]
        # variable index -> (group number, row in the group)
        self._position = {index: (number, row)
                          for number, group in enumerate(self.groups)
                          for row, index in enumerate(group)}
        self._sizes = np.array([layout.size for layout in self.layouts],
                               np.float64)
        # output units: the last axis (0 for a scalar: no dead_units)
        self._units = np.array([layout.shape[-1] if layout.shape else 0
                                for layout in self.layouts], np.float64)

    @property
    def key(self):
        """Identifies the variables this state belongs to."""
        return tuple(id(v) for v in self.variables)

    def state_arrays(self):
        """The accumulated state as ``(name, tensor)`` pairs (`resume`)."""
        for number, state in enumerate(self.states):
            for name, array in self.kernel.saved_arrays(state):
                yield f"{number}/{name}", array

    def load_state_arrays(self, arrays):
        """Continues from `state_arrays` output of the same variables.

        Raises ValueError (and changes nothing) when the groups or their
        shapes differ.
        """
        numbers = {name.split("/", 1)[0] for name in arrays}
        if numbers != {str(n) for n in range(len(self.states))}:
            raise ValueError(f"{len(numbers)} state groups saved, "
                             f"{len(self.states)} expected")
        kept = [state.values() for state in self.states]
        try:
            for number, state in enumerate(self.states):
                self.kernel.load_state(state, {
                    name.split("/", 1)[1]: array
                    for name, array in arrays.items()
                    if name.split("/", 1)[0] == str(number)})
        except ValueError:
            for state, values in zip(self.states, kept):
                state.replace(values)
            raise

    def stack(self, gradients):
        """Per-variable gradients as ``(count, size)`` arrays per group."""
        return [self.kernel.stack([gradients[i] for i in group])
                for group in self.groups]

    def end_window(self, stacked, window_scalars=None, probe_batches=0,
                   record=True, first_nonfinite=None):
        """Adds the window gradients to the state; returns a `WindowRecord`.

        The backend's kernel updates each group's state with its
        gradients and reduces them on the device (`WindowKernel.window_end`);
        the reductions and the weights' norms then reach the host in one
        transfer (`WindowKernel.to_host`).

        Args:
          stacked: per group, its window gradients as one ``(count, size)``
            tensor (`stack`, or the capture's stacked window sums).
          window_scalars: ``(variables, 3)`` variable of the
            ``WINDOW_SCALARS`` (training); None for the probe.
          probe_batches: the probe's ``steps`` figure (number of batches).
          record: False for a window that is not logged: the state is
            updated, nothing is computed for the host.
          first_nonfinite: ``(variables,)`` first optimizer step with a
            non-finite applied gradient, negative for none (training).
        """
        outs = self.kernel.window_end(
            self.states, [self.layouts[group[0]] for group in self.groups],
            stacked, record,
            [[(row, self.layouts[index]) for row, index in enumerate(group)
              if self.layouts[index].gate_count] for group in self.groups])
        if not record:
            return None
        host = self.kernel.to_host({"groups": outs,
                                    "weight_l2": self.kernel.weight_norms(
                                        self.variables)})
        scalars = None if window_scalars is None else window_scalars.numpy()
        return self._host_record(host["groups"], host["weight_l2"], stacked,
                                 scalars, probe_batches, first_nonfinite)

    def _host_record(self, outs, weight_l2, stacked, scalars, probe_batches,
                     first_nonfinite):
        count = len(self.variables)
        reductions = np.empty((count, len(statistics.REDUCTIONS)))
        histograms = [None] * count
        heatmaps = [None] * count
        gates = {}
        for group, out in zip(self.groups, outs):
            reductions[group] = out["reductions"]
            counts = out["histogram"]
            heatmap = out.get("heatmap")
            for row, index in enumerate(group):
                layout = self.layouts[index]
                if layout.buckets:
                    histograms[index] = counts[row]
                if heatmap is not None:
                    heatmaps[index] = heatmap[row].reshape((4,) + layout.grid)
            for row, (table, pooled) in out["gates"].items():
                index = group[row]
                layout = self.layouts[index]
                grid = tuple(-(-v // b) for v, b in zip(layout.gate_view,
                                                        layout.gate_block))
                gates[index] = (table, pooled.reshape(
                    (layout.gate_count,) + grid)
                    if layout.gate_cells else None, layout.gate_block)
        self._mask_non_finite(reductions, histograms, heatmaps, stacked)
        extra = {"units": self._units, "weight_l2": weight_l2,
                 "first_nonfinite_step": first_nonfinite}
        if scalars is not None:
            columns = statistics.variable_columns(
                reductions, self._sizes, scalars[:, 0], scalars[:, 1],
                scalars[:, 2], **extra)
        else:
            columns = statistics.variable_columns(
                reductions, self._sizes, np.full(count, float(probe_batches)),
                **extra)
        result = WindowRecord(self.source)
        result.columns = columns
        result.stats_matrix = statistics.statistics_matrix(columns)
        result.gates = gates
        low = statistics.REDUCTIONS.index("min")
        high = statistics.REDUCTIONS.index("max")
        for index, layout in enumerate(self.layouts):
            result.heatmaps.append(None if heatmaps[index] is None
                                   else (heatmaps[index], layout.block))
        result.histograms = [None] * count
        by_buckets = {}
        for index, counts in enumerate(histograms):
            if counts is not None:
                by_buckets.setdefault(len(counts), []).append(index)
        for indices in by_buckets.values():
            tables = histogram.histogram_tables(
                reductions[indices, low], reductions[indices, high],
                np.stack([histograms[i] for i in indices]))
            for index, table in zip(indices, tables):
                result.histograms[index] = table
        return result

    def _mask_non_finite(self, reductions, histograms, heatmaps, stacked):
        """Recomputes the variables whose G or C held NaN or Inf.

        The main step does not mask (that would cost a pass over every
        variable every window); its sums come out non-finite exactly for
        these variables, which are then reduced again over finite elements.
        """
        checked = [statistics.REDUCTIONS.index(name) for name in
                   ("l1", "sq", "accumulated_l1", "accumulated_sq")]
        flagged = np.flatnonzero(~np.isfinite(reductions[:, checked]).all(
            axis=1))
        l1 = statistics.REDUCTIONS.index("accumulated_abs_l1")
        by_group = {}
        for index in flagged:
            number, row = self._position[int(index)]
            by_group.setdefault(number, []).append((int(index), row))
        for number, members in by_group.items():
            layout = self.layouts[members[0][0]]
            # G finite (only C was not): the main step counted ‖G‖₁
            finite_g = {index: bool(np.isfinite(reductions[
                index, statistics.REDUCTIONS.index("l1")]))
                for index, _ in members}
            update_l1 = np.zeros(len(self.groups[number]), bool)
            for index, row in members:
                update_l1[row] = not finite_g[index]
            out = self.kernel.to_host(self.kernel.masked_end(
                self.states[number], layout, stacked[number], update_l1))
            for index, row in members:
                masked = out["reductions"][row]
                if finite_g[index]:
                    masked[l1] = reductions[index, l1]
                reductions[index] = masked
                if histograms[index] is not None:
                    histograms[index] = out["histogram"][row]
                if heatmaps[index] is not None:
                    heatmaps[index] = out["heatmap"][row].reshape(
                        (4,) + self.layouts[index].grid)
