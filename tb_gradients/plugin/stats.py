"""The plugin's statistics bodies: per variable, global (scalars), per step.

Reads the statistics series of a run into arrays on one epoch axis
(`stat_matrix`, `align`, `StatsTable`) and builds the `/variable_stats`,
`/scalars` and `/steps` bodies of docs/API.md from them, reduced to buckets
of steps (`plugin.buckets`) when a route asks for ``points``. The functions
take the plain values a data provider returns (``TensorDatum``s,
``ScalarDatum``s, metadata contents), so each one can be tested on hand-made
input; `Handler` serves the three routes with them.
"""

import numpy as np
from tensorboard import errors

from tb_gradients import json_values
from tb_gradients.format import decoding
from tb_gradients.format import metadata
from tb_gradients.format import scalars as scalars_format
from tb_gradients.format import steps as steps_format
from tb_gradients.format import variable_stats
from tb_gradients.plugin import buckets as plugin_buckets
from tb_gradients.plugin import cache as plugin_cache
from tb_gradients.plugin import handler
from tb_gradients.plugin import series as plugin_series

# -- per-variable statistics --------------------------------------------------


def stat_matrix(datums, content):
    """Statistics vectors of one variable as an ``(epochs, stats)`` matrix.

    Vectorised because `/variable_stats` handles thousands of vectors per
    request (variables x epochs).

    Args:
      datums: ``TensorDatum``s of one ``variable_stats`` series.
      content: That series' parsed content (its ``stats`` columns).

    Returns:
      ``(epochs, matrix, unreadable)``: sorted int64 epochs, a float64 matrix
      whose columns follow ``VARIABLE_STAT_NAMES`` (NaN where the file has
      no such column), and a `format.decoding.ReadError` (with its step)
      per epoch left out because its tensor is not a vector of the
      announced columns (`format.variable_stats.decode`). Of repeated
      epochs the latest recording (`plugin.series.latest_by_step`) wins.
    """
    columns = variable_stats.stat_columns(content)
    by_epoch, unreadable = {}, []
    for datum in plugin_series.latest_by_step(datums):
        try:
            by_epoch[int(datum.step)] = variable_stats.decode(content,
                                                              datum.numpy)
        except decoding.ReadError as error:
            unreadable.append(error.located(step=int(datum.step)))
    if not by_epoch:
        return np.zeros(0, dtype=np.int64), np.zeros(
            (0, len(variable_stats.VARIABLE_STAT_NAMES))), unreadable
    epochs = np.array(sorted(by_epoch), dtype=np.int64)
    return epochs, variable_stats.by_stat_names(
        np.stack([by_epoch[epoch] for epoch in epochs.tolist()]),
        columns), unreadable


def stat_rows(datums, content):
    """``{epoch: row of stat_matrix}``, for lookups of single epochs."""
    epochs, matrix, _ = stat_matrix(datums, content)
    return dict(zip(epochs.tolist(), matrix))


def stat_index(name):
    """Column of ``name`` in `stat_matrix` / `stat_rows` rows."""
    return variable_stats.VARIABLE_STAT_NAMES.index(name)


def max_finite(values):
    """The largest finite value of ``values``, or ``None``."""
    array = np.asarray(list(values), dtype=np.float64)
    array = array[np.isfinite(array)]
    return float(array.max()) if array.size else None


def align(epochs, matrix, all_epochs):
    """``matrix`` rows placed on ``all_epochs`` (NaN rows where missing).

    Returns:
      ``(aligned matrix, present)`` with ``present`` a boolean mask.
    """
    if np.array_equal(epochs, all_epochs):
        return matrix, np.ones(len(all_epochs), dtype=bool)
    positions = np.searchsorted(all_epochs, epochs)
    aligned = np.full((len(all_epochs), matrix.shape[1]), np.nan)
    aligned[positions] = matrix
    present = np.zeros(len(all_epochs), dtype=bool)
    present[positions] = True
    return aligned, present


def _nested_compact(array):
    """`nested_or_none`, with integral values as Python ints.

    Counts, sizes and indices are stored as float64 next to the other
    statistics; ``48`` is the same JSON number as ``48.0`` and two
    characters shorter. Negative zero stays a float (its sign is data).
    """
    array = np.asarray(array, dtype=np.float64)
    finite = np.isfinite(array)
    integral = finite & (np.abs(array) < 2.0**53)
    integral[integral] = array[integral] == np.floor(array[integral])
    integral &= (array != 0) | ~np.signbit(array)
    if not integral.any():
        return json_values.nested_or_none(array)
    values = array.astype(object)
    values[integral] = array[integral].astype(np.int64)
    values[~finite] = None
    return values.tolist()


def aligned_values(aligned, present, columns=None):
    """JSON rows of an aligned matrix: ``None`` rows where not present.

    Args:
      aligned: Output of `align`.
      present: Its mask of epochs that have data.
      columns: Positions of the columns to keep (`stat_index`), in the
        order wanted; all when ``None``.
    """
    if columns is not None:
        aligned = aligned[:, list(columns)]
    rows = _nested_compact(aligned)
    for index in np.flatnonzero(~present).tolist():
        rows[index] = None
    return rows


def highest_series(aligned, present):
    """The seed "Gradient Evolution" highest-gradient curves of a variable.

    Both curves are divided by the same ``S``, the largest finite
    accumulated ``max |C|`` over all epochs (1 when it is 0 or missing), so
    the two can be drawn on one axis and compared across epochs.

    Args:
      aligned: The variable's `align`ed statistics matrix.
      present: Its mask of epochs that have data.

    Returns:
      ``(highest_gradient, highest_accumulated)``, lists aligned with the
      rows holding ``None`` where the epoch is missing or non-finite.
    """
    gradient, accumulated = highest_arrays(aligned, present)
    return (json_values.nested_or_none(gradient),
            json_values.nested_or_none(accumulated))


def highest_arrays(aligned, present):
    """`highest_series` as float64 arrays (NaN where `None`)."""
    max_abs = aligned[:, stat_index("max_abs")]
    accumulated = aligned[:, stat_index("accumulated_max_abs")]
    scale = max_finite(accumulated[present])
    if not scale:
        scale = 1.0
    return max_abs / scale, accumulated / scale


# -- /variable_stats ----------------------------------------------------------


class StatsTable:
    """Every variable's statistics of one run and source, on one epoch axis.

    Reading the series is most of the cost of `/variable_stats` on a long
    run (one tensor per variable and epoch); the table is what every
    request of the run needs, whatever its columns, filter, range or
    ``points``, so the plugin keeps it while the series are unchanged.

    Attributes:
      entries: `variable_entries` of the run and source.
      epochs: Sorted int64 union of the variables' epochs.
      aligned: Per entry, its `stat_matrix` placed on ``epochs`` (`align`).
      present: Per entry, the mask of ``epochs`` it has a vector at.
      highest: Per entry, `highest_arrays` over all its epochs.
      unreadable: the `format.decoding.ReadError`s of the vectors left
        out (with their tag and step).
    """

    def __init__(self, entries, matrices):
        """Args: entries, and per entry the ``(epochs, matrix,
        unreadable)`` of `stat_matrix`."""
        self.entries = list(entries)
        self.epochs = np.unique(np.concatenate(
            [steps for steps, _, _ in matrices] + [np.zeros(0, np.int64)]))
        self.unreadable = [error.located(tag=entry["tag"])
                           for entry, (_, _, found) in zip(self.entries,
                                                           matrices)
                           for error in found]
        self.aligned, self.present, self.highest = [], [], []
        for steps, matrix, _ in matrices:
            aligned, present = align(steps, matrix, self.epochs)
            self.aligned.append(aligned)
            self.present.append(present)
            self.highest.append(highest_arrays(aligned, present))


def _rows_or_none(array, present):
    """`_nested_compact` rows (or values) with ``None`` where not present."""
    rows = _nested_compact(array) if np.ndim(array) > 1 else \
        json_values.nested_or_none(array)
    for index in np.flatnonzero(~present).tolist():
        rows[index] = None
    return rows


def variable_stats_body(table, selected, names, points=None, start=None,
                        end=None):
    """The `/variable_stats` body (docs/API.md) of some variables of a table.

    Args:
      table: A `StatsTable`.
      selected: Positions in ``table.entries`` of the variables to return.
      names: The statistics, in order.
      points: The ``points`` parameter (`bucket_starts`), or ``None``.
      start, end: The step range (inclusive; ``None``: open).

    Returns:
      ``{"stats", "epochs", "buckets", "variables"}``.
    """
    columns = [stat_index(name) for name in names]
    rows = plugin_buckets.in_range(table.epochs, start, end)
    if selected:
        rows &= np.logical_or.reduce([table.present[i] for i in selected])
    else:
        rows &= False
    epochs = table.epochs[rows]
    starts = plugin_buckets.bucket_starts(epochs, points)
    variables = []
    for i in selected:
        entry = table.entries[i]
        aligned = table.aligned[i][rows][:, columns]
        present = table.present[i][rows]
        gradient, accumulated = (a[rows] for a in table.highest[i])
        variable = {key: entry[key]
                    for key in ("name", "layer", "index", "shape")}
        if starts is None:
            variable.update({
                "values": aligned_values(aligned, present),
                "highest_gradient": json_values.nested_or_none(gradient),
                "highest_accumulated":
                    json_values.nested_or_none(accumulated),
            })
        else:
            has = plugin_buckets.present_buckets(present, starts)
            parts = [plugin_buckets.envelope(values, starts)
                     for values in (aligned, gradient, accumulated)]
            for side, name in enumerate(("min", "max")):
                variable[name] = {
                    "values": _rows_or_none(parts[0][side], has),
                    "highest_gradient": _rows_or_none(parts[1][side], has),
                    "highest_accumulated": _rows_or_none(parts[2][side], has),
                }
        variables.append(variable)
    return {
        "stats": list(names), "epochs": epochs.tolist(),
        "buckets": None if starts is None else plugin_buckets.bucket_bounds(
            epochs, starts),
        "variables": variables,
    }


# -- scalars -----------------------------------------------------------------


def scalar_series(tag_to_data, source):
    """The global statistics of one source, aligned on a common epoch axis.

    Args:
      tag_to_data: ``{tag: [ScalarDatum]}`` of one run.
      source: ``"training"`` or ``"probe"``.

    Returns:
      ``(epochs, {stat: [value or None per epoch]})`` for the stats of
      ``GLOBAL_STAT_NAMES`` that have data.
    """
    by_stat = {}
    for name in scalars_format.GLOBAL_STAT_NAMES:
        data = tag_to_data.get(metadata.scalar_tag(source, name))
        if data:
            by_stat[name] = {int(d.step): float(d.value)
                             for d in plugin_series.latest_by_step(data)}
    epochs = sorted({step for values in by_stat.values() for step in values})
    series = {
        name: [json_values.finite_or_none(values.get(epoch))
               for epoch in epochs]
        for name, values in by_stat.items()
    }
    return epochs, series


def reduced_scalars(epochs, series, points=None, start=None, end=None):
    """`scalar_series` within a step range, reduced to ``points`` buckets.

    Returns:
      The ``epochs``, ``buckets`` and ``series`` (or, with buckets,
      ``min`` and ``max``) fields of the `/scalars` body.
    """
    mask = plugin_buckets.in_range(epochs, start, end)
    kept = np.asarray(epochs, dtype=np.int64)[mask]
    starts = plugin_buckets.bucket_starts(kept, points)
    indices = np.flatnonzero(mask).tolist()
    if starts is None:
        return {"epochs": kept.tolist(), "buckets": None,
                "series": {name: [values[i] for i in indices]
                           for name, values in series.items()}}
    body = {"epochs": kept.tolist(),
            "buckets": plugin_buckets.bucket_bounds(kept, starts),
            "min": {}, "max": {}}
    for name, values in series.items():
        array = np.array([values[i] for i in indices], dtype=np.float64)
        low, high = plugin_buckets.envelope(array, starts)
        body["min"][name] = json_values.nested_or_none(low)
        body["max"][name] = json_values.nested_or_none(high)
    return body


# -- per-step table ------------------------------------------------------


def step_column_indices(content):
    """The per-step table's ``(l2 column, max_abs column)`` indices."""
    columns = steps_format.step_columns(content)
    return tuple(columns.index(name) if name in columns else None
                 for name in steps_format.STEP_COLUMNS)


def step_epochs(datums, content):
    """Per-epoch lists of per-step ``l2`` and ``max_abs`` values.

    Of repeated epochs, the latest recording (`plugin.series.latest_by_step`).

    Raises:
      format.decoding.ReadError: When a tensor is not a ``(steps,
        columns)`` table (`format.steps.decode`), with its step.
    """
    l2_column, max_column = step_column_indices(content)
    epochs = []
    for datum in plugin_series.latest_by_step(datums):
        with decoding.locating(step=int(datum.step)):
            table = steps_format.decode(content, datum.numpy)
        epochs.append({
            "epoch": int(datum.step),
            "l2": _column(table, l2_column),
            "max_abs": _column(table, max_column),
        })
    return epochs


def _column(table, index):
    if index is None or index >= table.shape[1]:
        return [None] * table.shape[0]
    return json_values.finite_list(table[:, index])


class Handler(handler.Handler):
    """The statistics routes: ``/scalars``, ``/variable_stats`` and ``/steps``."""

    def scalars(self, ctx, experiment, run, source, points=None,
                     start=None, end=None):
        """The global ``gradients/<source>/<stat>`` scalars, as gzip JSON.

        Args:
          points: At most this many buckets (`plugin.buckets.bucket_starts`),
            or ``None`` for every epoch.
          start, end: The step range (inclusive), ``None`` for open ends.
        """
        tags = [metadata.scalar_tag(source, name)
                for name in scalars_format.GLOBAL_STAT_NAMES]
        # Reading a long run's scalars costs far more than listing them:
        # the body is kept while their last step and wall time are the same.
        listing = self._data.list_scalars(ctx, experiment, run, tags)
        if not listing:
            raise errors.NotFoundError(
                "No gradient scalars for run %r and source %r" % (run, source))
        key = ("scalars", experiment, run, source, points, start, end,
               plugin_cache.series_signature(listing, tags))

        def build():
            data = self._data.read_scalars(ctx, experiment, run, tags)
            epochs, series = scalar_series(data, source)
            if not series:
                raise errors.NotFoundError(
                    "No gradient scalars for run %r and source %r"
                    % (run, source))
            body = {"run": run, "source": source}
            body.update(reduced_scalars(epochs, series, points, start, end))
            return json_values.gzip_json(body)

        return self._data.cache.get_or_build(key, build)

    def variable_stats(self, ctx, experiment, run, source, pattern=None,
                            names=None, points=None, start=None, end=None):
        """Every variable's statistics vectors over the epochs, as gzip JSON.

        The run's statistics (`plugin.stats.StatsTable`, the reading of one
        tensor per variable and epoch) and each body are kept in caches
        while the run's series are unchanged: the frontend asks for several
        columns, ranges and reductions of the same table. A view that draws
        a few statistics asks for those only (``names``), and a chart of a
        long run for a min/max envelope of ``points`` buckets: the numbers
        are most of the body's size, of its encoding and of the browser's
        work.

        Args:
          pattern: A compiled regex searched in variable names, or ``None``.
          names: The statistics to return, in this order (from
            `plugin.params.parse_stat_names`), or ``None`` for all of them.
          points: At most this many buckets, or ``None`` for every epoch.
          start, end: The step range (inclusive), ``None`` for open ends.
        """
        entries, parsed, signature = self._data.variables(ctx, experiment, run,
                                                     source)
        names = tuple(names or variable_stats.VARIABLE_STAT_NAMES)
        key = ("variable_stats", experiment, run, source,
               None if pattern is None else pattern.pattern, names, points,
               start, end, signature)

        def build():
            table = self._data.stats_table(ctx, experiment, run, source,
                                           entries, parsed, signature)
            selected = [i for i, entry in enumerate(table.entries)
                        if pattern is None or pattern.search(entry["name"])]
            body = {"run": run, "source": source}
            body.update(variable_stats_body(
                table, selected, names, points, start, end))
            return json_values.gzip_json(body)

        return self._data.cache.get_or_build(key, build)

    def steps(self, ctx, experiment, run, source):
        """Per-step global L2 norm and max |g| of each epoch (training)."""
        tag = metadata.steps_tag(source)
        content, datums = self._data.series_of_kind(
            ctx, experiment, run, tag, metadata.KIND_STEPS,
            "No per-step gradient data for run %r and source %r"
            % (run, source))
        with decoding.locating(run=run, tag=tag):
            epochs = step_epochs(datums, content)
        return {"run": run, "source": source, "epochs": epochs}
