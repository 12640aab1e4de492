"""The plugin's findings: a run's series, as the plugin already reads them,
through the rules of `findings`.

The ``/findings`` route builds the `series.SourceSeries` of each source from
the run's statistics table (`plugin.stats.StatsTable`, the same cached read
as ``/variable_stats``: each step once, the latest recording), its global
scalars and its per-step tables, and evaluates the same rules as the
callback and the ``diagnose`` command. Pure: the plugin does the reading.
"""

import numpy as np

from tb_gradients.analysis import findings
from tb_gradients.plugin import series as plugin_series
from tb_gradients.plugin import stats as plugin_stats
from tb_gradients.analysis import series
def source_series(source, window, table, scalar_data, step_datums):
    """The `series.SourceSeries` of one source of a run.

    Args:
      window: the run's ``window`` (`plugin.series.run_window`).
      table: the `plugin.stats.StatsTable` of the source (at least one
        variable).
      scalar_data: ``{tag: [ScalarDatum]}`` of the run's global scalars.
      step_datums: the per-step table's ``TensorDatum``s (may be empty).
    """
    steps = table.epochs
    stats = np.stack(table.aligned, axis=1)  # (steps, variables, stats)
    epochs, values = plugin_stats.scalar_series(scalar_data, source)
    position = {int(step): i for i, step in enumerate(steps.tolist())}
    scalars = {}
    for name, column in values.items():
        aligned = np.full(len(steps), np.nan)
        for epoch, value in zip(epochs, column):
            if epoch in position and value is not None:
                aligned[position[epoch]] = value
        scalars[name] = aligned
    tables = {step: np.asarray(datum.numpy, np.float64).reshape(-1, 2)
              for step, datum in plugin_series.by_step(step_datums).items()}
    variables = [{key: entry[key] for key in ("name", "layer", "index")}
                 | {"shape": list(entry["shape"])} for entry in table.entries]
    return series.SourceSeries(source, window, steps, variables, stats,
                               scalars, tables)


def findings_body(by_source):
    """The findings of one run (most severe first), as JSON objects with
    their ``source``, ``at`` and ``view`` (the tab's link).

    Args:
      by_source: ``{source: series.SourceSeries}``.
    """
    return [finding.to_json(extended=True)
            for finding in findings.evaluate(by_source)]
