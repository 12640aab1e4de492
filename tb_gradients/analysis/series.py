"""The recorded series of one gradient source of one run, as arrays.

One structure for everything that reads a run as a whole: the rules of
`findings`, the `reader` (event files, for notebooks and the `diagnose`
command), the plugin's ``/findings`` route (TensorBoard's data provider)
and the callback while it trains (its own records). Plain numpy, no I/O.
"""

import numpy as np



from tb_gradients.format import variable_stats
class SourceSeries:
    """Every window record of one source of one run.

    Attributes:
      source: ``"training"`` or ``"probe"``.
      window: ``"epoch"`` (the steps are epochs) or N (windows of N
        optimizer steps; the steps are the global step at each window's
        end).
      steps: int64 ``(windows,)``, the summary steps, ascending, each once.
      variables: per variable, a dict ``name``, ``layer``, ``index``,
        ``shape`` (list), in the order of ``index``.
      stats: float64 ``(windows, variables, len(VARIABLE_STAT_NAMES))``;
        NaN where a window has no record of a variable or a column.
      scalars: ``{GLOBAL_STAT_NAMES name: float64 (windows,)}``.
      step_tables: ``{summary step: float64 (n, 2)}`` per-step ``(l2,
        max_abs)`` rows (training).
    """

    def __init__(self, source, window, steps, variables, stats, scalars=None,
                 step_tables=None):
        self.source = source
        self.window = window
        self.steps = np.asarray(steps, np.int64)
        self.variables = list(variables)
        self.stats = np.asarray(stats, np.float64).reshape(
            len(self.steps), len(self.variables),
            len(variable_stats.VARIABLE_STAT_NAMES))
        self.scalars = {name: np.asarray(values, np.float64)
                        for name, values in (scalars or {}).items()}
        self.step_tables = dict(step_tables or {})

    @property
    def per_epoch(self):
        return self.window == "epoch"

    @property
    def names(self):
        return [variable["name"] for variable in self.variables]

    def stat(self, name):
        """``(windows, variables)`` values of one statistic."""
        return self.stats[:, :, variable_stats.VARIABLE_STAT_NAMES.index(name)]

    def scalar(self, name):
        """``(windows,)`` values of a global scalar (NaN if not recorded)."""
        values = self.scalars.get(name)
        if values is None:
            return np.full(len(self.steps), np.nan)
        return values

    def to_pandas(self):
        """A long DataFrame: one row per (step, variable), a column per
        statistic (needs pandas)."""
        import pandas as pd

        windows, count, _ = self.stats.shape
        frame = pd.DataFrame(
            self.stats.reshape(windows * count, -1),
            columns=list(variable_stats.VARIABLE_STAT_NAMES))
        frame.insert(0, "variable", self.names * windows)
        frame.insert(0, "step", np.repeat(self.steps, count))
        return frame


def from_records(source, window, records):
    """A `SourceSeries` from ``(step, variables, stats rows, scalars,
    step table)`` records, in any order, a repeated step's latest last.

    Args:
      records: iterable of ``(step, variables, rows, scalars, table)``:
        ``variables`` as in `SourceSeries`, ``rows`` float64 ``(variables,
        stats)`` in ``VARIABLE_STAT_NAMES`` order, ``scalars`` a dict,
        ``table`` an ``(n, 2)`` array or None.
    """
    by_step = {}
    for record in records:
        by_step[int(record[0])] = record
    steps = sorted(by_step)
    variables, seen = {}, set()
    for step in steps:
        names = by_step[step][1]
        if id(names) in seen:  # the same list for every window of a fit
            continue
        seen.add(id(names))
        for variable in names:
            variables.setdefault(variable["name"], variable)
    ordered = sorted(variables.values(),
                     key=lambda v: (v["index"], v["name"]))
    position = {v["name"]: i for i, v in enumerate(ordered)}
    width = len(variable_stats.VARIABLE_STAT_NAMES)
    stats = np.full((len(steps), len(ordered), width), np.nan)
    scalars = {}
    tables = {}
    rows_of = {}  # id of a variables list: their positions
    for w, step in enumerate(steps):
        _, names, rows, values, table = by_step[step]
        if id(names) not in rows_of:
            rows_of[id(names)] = np.fromiter(
                (position[variable["name"]] for variable in names),
                np.int64, len(names))
        if len(names):
            stats[w, rows_of[id(names)]] = np.asarray(rows)[:len(names)]
        for name, value in (values or {}).items():
            scalars.setdefault(name, np.full(len(steps), np.nan))[w] = value
        if table is not None:
            tables[step] = np.asarray(table, np.float64)
    return SourceSeries(source, window, steps, ordered, stats, scalars,
                        tables)
