"""The findings of a run while it trains: the recent windows of each source,
the findings engine over them, and which findings are new.

The callback feeds it every logged window (`remember`) and asks, once per
logged window, for the findings and the ones not reported before
(`check`); each finding is reported once per run (its `Finding.key`).
"""

import numpy as np

from tb_gradients.analysis import findings
from tb_gradients.analysis import series

# Records per source kept for the findings (the rules look at recent
# windows; docs/FINDINGS.md).
FINDINGS_HISTORY = 64


class FindingsMonitor:
    """Recent windows per source, and the findings reported so far.

    Args:
      window: the callback's ``gradient_window`` (``"epoch"`` or N steps).
      history: windows kept per source.
    """

    def __init__(self, window, history=FINDINGS_HISTORY):
        self.window = window
        self._history_length = history
        self._history = {}  # source -> recent records
        self._reported = set()  # Finding.key already reported

    def forget(self, source):
        """Drops a source's windows (its variables changed: a new model)."""
        self._history.pop(source, None)

    def remember(self, source, step, variables, stats, global_values,
                 step_table):
        """Keeps one window's figures.

        Args:
          step: the window's summary step.
          variables: per variable ``{"name", "layer", "index", "shape"}``.
          stats: float64 ``(variables, VARIABLE_STAT_NAMES)``
            (`window.statistics.statistics_matrix`).
          global_values: the whole-model figures.
          step_table: the per-step ``(l2, max_abs)`` rows, or None.
        """
        rows = np.asarray(stats, np.float64)
        history = self._history.setdefault(source, [])
        history.append((step, variables, rows, global_values, step_table))
        del history[:-self._history_length]

    def check(self):
        """``(found, new)``: every finding of the remembered windows, and
        those not reported before (now marked reported)."""
        by_source = {source: series.from_records(source, self.window,
                                                 records)
                     for source, records in self._history.items()}
        found = findings.evaluate(by_source)
        new = [f for f in found if f.key not in self._reported]
        self._reported.update(f.key for f in new)
        return found, new
