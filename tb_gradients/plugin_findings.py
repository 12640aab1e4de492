"""The plugin's findings: a run's series from the data provider, through
the rules of `findings`.

The ``/findings`` route reads what TensorBoard has loaded (both loaders),
builds the `series.SourceSeries` of each source (each step once, the latest
recording) and evaluates the same rules as the callback and the
``diagnose`` command.
"""

import numpy as np
from tensorboard.data import provider

from tb_gradients import findings
from tb_gradients import metadata
from tb_gradients import plugin_listing
from tb_gradients import plugin_series
from tb_gradients import plugin_stats
from tb_gradients import series

SCALARS_PLUGIN = "scalars"
DOWNSAMPLE = 10**9


def _stats(datums_by_tag, entries, parsed):
    """``(steps, (windows, variables, stats))`` on the union of steps."""
    matrices = [plugin_stats.stat_matrix(datums_by_tag.get(e["tag"], []),
                                         plugin_stats.stat_columns(
                                             parsed[e["tag"]]))
                for e in entries]
    steps = np.unique(np.concatenate(
        [s for s, _ in matrices] + [np.zeros(0, np.int64)]))
    stacked = np.full((len(steps), len(entries),
                       len(metadata.VARIABLE_STAT_NAMES)), np.nan)
    for v, (own, matrix) in enumerate(matrices):
        aligned, _ = plugin_stats.align(own, matrix, steps)
        stacked[:, v] = aligned
    return steps, stacked


def source_series(data_provider, ctx, experiment, run, source, listing):
    """The `series.SourceSeries` of one source of a run, or None.

    Args:
      listing: ``{tag: parsed content}`` of the run (`parse_listing`).
    """
    parsed = {tag: c for tag, c in listing.items() if c["source"] == source}
    entries = plugin_listing.variable_entries(parsed, source)
    if not entries:
        return None
    steps_tag = metadata.steps_tag(source)
    tags = [e["tag"] for e in entries] + (
        [steps_tag] if steps_tag in parsed else [])
    data = data_provider.read_tensors(
        ctx, experiment_id=experiment, plugin_name=metadata.PLUGIN_NAME,
        downsample=DOWNSAMPLE,
        run_tag_filter=provider.RunTagFilter(runs=[run], tags=tags)).get(
            run, {})
    steps, stats = _stats(data, entries, parsed)
    scalar_tags = [metadata.scalar_tag(source, name)
                   for name in metadata.GLOBAL_STAT_NAMES]
    scalar_data = data_provider.read_scalars(
        ctx, experiment_id=experiment, plugin_name=SCALARS_PLUGIN,
        downsample=DOWNSAMPLE,
        run_tag_filter=provider.RunTagFilter(runs=[run],
                                             tags=scalar_tags)).get(run, {})
    epochs, values = plugin_stats.scalar_series(scalar_data, source)
    position = {int(step): i for i, step in enumerate(steps.tolist())}
    scalars = {}
    for name, column in values.items():
        aligned = np.full(len(steps), np.nan)
        for epoch, value in zip(epochs, column):
            if epoch in position and value is not None:
                aligned[position[epoch]] = value
        scalars[name] = aligned
    tables = {
        step: np.asarray(datum.numpy, np.float64).reshape(-1, 2)
        for step, datum in plugin_series.by_step(
            data.get(steps_tag, [])).items()}
    variables = [{key: entry[key] for key in ("name", "layer", "index")}
                 | {"shape": list(entry["shape"])} for entry in entries]
    return series.SourceSeries(source, plugin_series.run_window(parsed),
                               steps, variables, stats, scalars, tables)


def run_findings(data_provider, ctx, experiment, run, listing):
    """The findings of one run (most severe first), as JSON objects with
    their ``source``, ``at`` and ``view`` (the tab's link)."""
    by_source = {}
    for source in metadata.SOURCES:
        found = source_series(data_provider, ctx, experiment, run, source,
                              listing)
        if found is not None:
            by_source[source] = found
    return [finding.to_json(extended=True)
            for finding in findings.evaluate(by_source)]
