"""The plugin's findings: a run's series, as the plugin already reads them,
through the rules of `findings`.

The ``/findings`` route builds the `series.SourceSeries` of each source from
the run's statistics table (`plugin.stats.StatsTable`, the same cached read
as ``/variable_stats``: each step once, the latest recording), its global
scalars and its per-step tables, and evaluates the same rules as the
callback and the ``diagnose`` command. The functions are pure; `Handler`
does the reading.
"""

import numpy as np
from tensorboard import errors

from tb_gradients.analysis import findings
from tb_gradients.analysis import series
from tb_gradients.format import decoding
from tb_gradients.format import metadata
from tb_gradients.format import steps as steps_format
from tb_gradients.format import scalars as scalars_format
from tb_gradients.plugin import cache as plugin_cache
from tb_gradients.plugin import handler
from tb_gradients.plugin import listing as plugin_listing
from tb_gradients.plugin import series as plugin_series
from tb_gradients.plugin import stats as plugin_stats


def source_series(source, window, table, scalar_data, step_datums,
                  step_content=None):
    """The `series.SourceSeries` of one source of a run.

    Args:
      window: the run's ``window`` (`plugin.series.run_window`).
      table: the `plugin.stats.StatsTable` of the source (at least one
        variable).
      scalar_data: ``{tag: [ScalarDatum]}`` of the run's global scalars.
      step_datums: the per-step table's ``TensorDatum``s (may be empty).
      step_content: that series' parsed content (its ``columns``).

    Returns:
      ``(series, unreadable)``: the `series.SourceSeries`, and a
      `format.decoding.ReadError` (with tag and step) per per-step table
      left out because it is not a ``(steps, columns)`` table.
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
    tables, unreadable = {}, []
    for step, datum in plugin_series.by_step(step_datums).items():
        try:
            tables[step] = steps_format.decode(step_content or {},
                                               datum.numpy)
        except decoding.ReadError as error:
            unreadable.append(error.located(tag=metadata.steps_tag(source),
                                            step=int(step)))
    variables = [{key: entry[key] for key in ("name", "layer", "index")}
                 | {"shape": list(entry["shape"])} for entry in table.entries]
    return series.SourceSeries(source, window, steps, variables, stats,
                               scalars, tables), unreadable


def findings_body(by_source, unreadable):
    """The findings of one run (most severe first), as JSON objects with
    their ``source``, ``at`` and ``view`` (the tab's link), and what could
    not be read of it.

    Args:
      by_source: ``{source: series.SourceSeries}``.
      unreadable: the run's `format.decoding.ReadError`s.

    Returns:
      ``{"findings": [...], "errors": [...]}`` (docs/API.md).
    """
    return {"findings": [finding.to_json(extended=True)
                         for finding in findings.evaluate(by_source)],
            "errors": decoding.errors_json(unreadable)}


class Handler(handler.Handler):
    """The ``/findings`` route."""

    def findings(self, ctx, experiment, run):
        """The findings of one run (`plugin.findings`) and its read errors,
        kept while the run's series are unchanged: every readable part of
        a damaged run still has its findings."""
        listing = self._data.list(ctx, experiment, runs=[run]).get(run, {})
        parsed, unreadable = plugin_listing.read_listing(run, listing)
        if not parsed and not unreadable:
            raise errors.NotFoundError("No gradient data for run %r" % run)
        key = ("findings", experiment, run,
               plugin_cache.series_signature(listing, listing))

        def build():
            by_source, found = self._source_series(ctx, experiment, run,
                                                   listing, parsed)
            self._data.report(unreadable + found)
            return findings_body(by_source, unreadable + found)

        body = self._data.cache.get_or_build(key, build)
        return {"run": run, **body}

    def _source_series(self, ctx, experiment, run, listing, parsed_run):
        """``({source: series.SourceSeries}, unreadable)`` of the run's
        sources with statistics, from the cached statistics table, and the
        `format.decoding.ReadError`s (run, tag, step) of the values left
        out.

        Args:
          listing, parsed_run: the run's listing and `parse_listing` of it.
        """
        by_source, unreadable = {}, []
        for source in metadata.SOURCES:
            parsed = plugin_listing.of_source(parsed_run, source)
            entries = plugin_listing.variable_entries(parsed, source)
            if not entries:
                continue
            signature = plugin_cache.series_signature(listing, parsed)
            table = self._data.stats_table(ctx, experiment, run, source,
                                           entries, parsed, signature)
            scalars = self._data.read_scalars(
                ctx, experiment, run, [metadata.scalar_tag(source, name)
                                       for name in scalars_format.GLOBAL_STAT_NAMES])
            steps_tag = metadata.steps_tag(source)
            step_datums = []
            if steps_tag in parsed:
                step_datums = self._data.read(ctx, experiment, runs=[run],
                                         tags=[steps_tag]).get(run, {}).get(
                                             steps_tag, [])
            by_source[source], found = source_series(
                source, plugin_series.run_window(parsed), table,
                scalars, step_datums, parsed.get(steps_tag))
            unreadable += [error.located(run=run)
                           for error in table.unreadable + found]
        return by_source, unreadable
