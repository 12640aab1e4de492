"""Pure helpers of the Gradients plugin: parsing, alignment, decoding, JSON.

Nothing here talks to a data provider or to werkzeug. The functions take the
plain values a data provider returns (metadata content bytes, numpy arrays,
``(step, value)`` pairs) and build the JSON bodies of docs/API.md, so each
one can be tested on hand-made input.
"""

import collections
import gzip
import json
import math
import os
import re
import threading

import numpy as np

from tb_gradients import metadata
from tb_gradients import plugin_series
from tb_gradients import stats

# Static assets: only these extensions are served, with these media types.
ASSET_CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
}

# A served asset name: one path component, no leading dot.
_ASSET_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

_INTEGER = re.compile(r"^[+-]?[0-9]{1,18}$")


# -- static assets -----------------------------------------------------------


def asset_map(directory):
    """The fixed ``name -> content type`` map of the static assets.

    Built once from a directory listing so that a request can only ever
    reach a file that existed under a known name when the plugin was
    loaded: there is no path in a request that is joined to a directory.

    Args:
      directory: The folder holding the frontend's ``*.js`` / ``*.css``.

    Returns:
      A dict from file name to media type; empty if the folder is missing.
    """
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return {}
    result = {}
    for name in names:
        content_type = ASSET_CONTENT_TYPES.get(os.path.splitext(name)[1])
        if content_type is None or not _ASSET_NAME.match(name):
            continue
        if os.path.isfile(os.path.join(directory, name)):
            result[name] = content_type
    return result


# -- strict JSON --------------------------------------------------------------


def json_safe(value):
    """``value`` with every NaN/±Inf replaced by ``None``, numpy made plain.

    Browsers' ``JSON.parse`` rejects the ``NaN`` / ``Infinity`` tokens that
    Python's `json` writes by default, so every body goes through this.

    Args:
      value: Nested dicts, lists, tuples, numbers, strings, numpy values.

    Returns:
      The same structure with lists for tuples/arrays and ``None`` for
      non-finite floats.
    """
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def dumps(value):
    """Strict JSON text of ``value`` (never ``NaN`` or ``Infinity``).

    The bodies are built with ``None`` already in place of non-finite
    numbers, so the direct encoding nearly always succeeds; the recursive
    `json_safe` pass (a third of the time of a large body) only runs when
    it fails. Values of a dict ``value`` that are `JSONText` are embedded
    as they are.
    """
    if isinstance(value, dict) and any(
            isinstance(item, JSONText) for item in value.values()):
        plain = {key: item for key, item in value.items()
                 if not isinstance(item, JSONText)}
        texts = ",".join(
            "%s:%s" % (json.dumps(str(key)), item)
            for key, item in sorted(value.items(), key=lambda kv: str(kv[0]))
            if isinstance(item, JSONText))
        head = dumps(plain)[:-1]
        return head + ("," if plain else "") + texts + "}"
    options = {"allow_nan": False, "sort_keys": True,
               "separators": (",", ":")}
    try:
        return json.dumps(value, **options)
    except (TypeError, ValueError):
        return json.dumps(json_safe(value), **options)


def gzip_json(value):
    """`dumps` of ``value``, gzip-compressed (level 3, as TensorBoard does).

    The large cached bodies are kept compressed: a repeated request then
    costs neither the encoding nor the compression (megabytes for long
    runs), and the cache holds several times more of them.
    """
    return gzip.compress(dumps(value).encode("utf-8"), compresslevel=3,
                         mtime=0)


def finite_or_none(value):
    """A float for a finite number, else ``None``."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def finite_list(array):
    """A flat list of floats with ``None`` where the value is non-finite."""
    array = np.asarray(array, dtype=np.float64).reshape(-1)
    finite = np.isfinite(array)
    values = array.tolist()
    if not finite.all():
        for index in np.flatnonzero(~finite).tolist():
            values[index] = None
    return values


class BodyCache:
    """A small thread-safe LRU of computed answers, bounded in size.

    A key must include a signature of the data the value was built from
    (each series' last step and wall time), so that a value is reused only
    while nothing new was logged. Worth it for `/variable_stats`, whose
    body takes thousands of tensor reads and megabytes of JSON, and for the
    epoch counts of `/runs`, which need a read.

    Args:
      max_bytes: Bound on the summed sizes (text: its length; anything
        else counts as 1 KiB).
      max_entries: Bound on the number of entries (keys hold signatures).
    """

    def __init__(self, max_bytes=64 * 2**20, max_entries=256):
        self._max_bytes = max_bytes
        self._max_entries = max_entries
        self._bytes = 0
        self._entries = collections.OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _size(value):
        return len(value) if isinstance(value, (str, bytes)) else 1024

    def get_or_build(self, key, build):
        """The cached value of ``key``, or ``build()`` (then cached)."""
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
                return value
        value = build()
        self._put(key, value)
        return value

    def _put(self, key, value):
        size = self._size(value)
        if size > self._max_bytes:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = value
            self._bytes += size
            while (self._bytes > self._max_bytes
                   or len(self._entries) > self._max_entries):
                _, old = self._entries.popitem(last=False)
                self._bytes -= self._size(old)

    def clear(self):
        with self._lock:
            self._entries.clear()
            self._bytes = 0


def series_signature(tag_to_series, tags):
    """What identifies the current data of ``tags``: last step, wall time."""
    return tuple(
        (tag, int(tag_to_series[tag].max_step),
         float(tag_to_series[tag].max_wall_time))
        for tag in sorted(tags) if tag in tag_to_series)


# -- request parameters -------------------------------------------------------


def parse_integer(text):
    """``int(text)`` for a plain decimal integer, else ``None``.

    Stricter than `int`, which accepts ``"1_0"``, spaces and unicode digits.
    """
    if not isinstance(text, str) or not _INTEGER.match(text):
        return None
    return int(text)


# Bounds of the ``points`` parameter: a bucket needs a first and a last
# point, and no chart is wider than this many pixels.
MIN_POINTS = 2
MAX_POINTS = 100000


def parse_points(text):
    """The ``points`` parameter: ``None`` when absent, else an int.

    Raises:
      ValueError: When it is not a decimal integer in
        ``[MIN_POINTS, MAX_POINTS]``.
    """
    if text is None or text == "":
        return None
    points = parse_integer(text)
    if points is None or not MIN_POINTS <= points <= MAX_POINTS:
        raise ValueError("must be an integer from %d to %d"
                         % (MIN_POINTS, MAX_POINTS))
    return points


def parse_step_range(start_text, end_text):
    """The ``start`` / ``end`` parameters: ``(start or None, end or None)``.

    Raises:
      ValueError: ``(name, message)`` when one is not a decimal integer, or
        when ``start > end``.
    """
    bounds = []
    for name, text in (("start", start_text), ("end", end_text)):
        if text is None or text == "":
            bounds.append(None)
            continue
        value = parse_integer(text)
        if value is None:
            raise ValueError(name, "must be an integer")
        bounds.append(value)
    start, end = bounds
    if start is not None and end is not None and start > end:
        raise ValueError("start", "must not be after end (%d)" % (end,))
    return start, end


def parse_stat_names(text):
    """The statistics asked for by ``stats=name1,name2``, or ``None``.

    Names keep the order given; a repeated name is kept once.

    Raises:
      ValueError: When a name is not one of ``VARIABLE_STAT_NAMES`` (the
        message lists the unknown ones).
    """
    if not text:
        return None
    names = []
    for name in text.split(","):
        if name not in names:
            names.append(name)
    unknown = [n for n in names if n not in metadata.VARIABLE_STAT_NAMES]
    if unknown:
        raise ValueError("unknown statistics %r" % (unknown,))
    return tuple(names)


def compile_filter(text):
    """The compiled variable filter, or ``None`` when there is none.

    Raises:
      re.error: When ``text`` is not a valid Python regular expression.
    """
    if not text:
        return None
    return re.compile(text)


# -- metadata content ---------------------------------------------------------


def parse_listing(tag_to_series):
    """Parsed content of every readable series of one run.

    Args:
      tag_to_series: ``{tag: TensorTimeSeries}`` as `list_tensors` returns
        for one run.

    Returns:
      ``{tag: content dict}``; series whose content
      `metadata.parse_plugin_metadata` rejects are left out.
    """
    parsed = {}
    for tag, series in tag_to_series.items():
        content = metadata.parse_plugin_metadata(series.plugin_content)
        if content is not None:
            parsed[tag] = content
    return parsed


def sources_present(parsed):
    """The sources with variable statistics, in ``metadata.SOURCES`` order.

    Only statistics make a source selectable: a run trained with the
    training source and probe data has ``probe`` timestep series but no
    ``probe`` statistics, and must not offer ``probe`` to views that need
    them.
    """
    seen = {content["source"] for content in parsed.values()
            if content.get("kind") == metadata.KIND_VARIABLE_STATS}
    return [source for source in metadata.SOURCES if source in seen]


def _shape(value):
    if not isinstance(value, (list, tuple)):
        return None
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
               for d in value):
        return None
    return [int(d) for d in value]


def _variable_from_tag(tag, source):
    prefix = metadata.variable_stats_tag(source, "")
    return tag[len(prefix):] if tag.startswith(prefix) else None


def variable_entries(parsed, source):
    """The variables of one source, described by their statistics series.

    A series with a malformed ``index`` or ``shape`` is skipped, like any
    other content this code does not understand.

    Args:
      parsed: Output of `parse_listing`.
      source: ``"training"`` or ``"probe"``.

    Returns:
      A list of dicts ``name, layer, index, shape, size, heatmap, tag``,
      sorted by ``index`` then ``name``.
    """
    heatmaps = {
        content.get("variable") for content in parsed.values()
        if content["kind"] == metadata.KIND_HEATMAP
        and content["source"] == source
    }
    entries = []
    for tag, content in parsed.items():
        if (content["kind"] != metadata.KIND_VARIABLE_STATS
                or content["source"] != source):
            continue
        name = content.get("variable")
        if not isinstance(name, str):
            name = _variable_from_tag(tag, source)
        index = content.get("index")
        shape = _shape(content.get("shape"))
        if (name is None or shape is None or isinstance(index, bool)
                or not isinstance(index, int)):
            continue
        layer = content.get("layer")
        if not isinstance(layer, str):
            layer = name.rsplit("/", 1)[0]
        entries.append({
            "name": name,
            "layer": layer,
            "index": index,
            "shape": shape,
            "size": int(np.prod(shape, dtype=np.int64)),
            "heatmap": name in heatmaps,
            "tag": tag,
        })
    entries.sort(key=lambda entry: (entry["index"], entry["name"]))
    return entries


def stat_columns(content):
    """Names of the columns of a statistics vector, from its content.

    The writer records the column names next to the data; reading them back
    (rather than assuming ``VARIABLE_STAT_NAMES``) keeps older files
    readable if a later version reorders or adds columns.
    """
    columns = content.get("stats")
    if (isinstance(columns, list) and columns
            and all(isinstance(c, str) for c in columns)):
        return columns
    return list(metadata.VARIABLE_STAT_NAMES)


def stat_matrix(datums, columns):
    """Statistics vectors of one variable as an ``(epochs, stats)`` matrix.

    Vectorised because `/variable_stats` handles thousands of vectors per
    request (variables x epochs).

    Args:
      datums: ``TensorDatum``s of one ``variable_stats`` series.
      columns: Output of `stat_columns` for that series.

    Returns:
      ``(epochs, matrix)``: sorted int64 epochs and a float64 matrix whose
      columns follow ``VARIABLE_STAT_NAMES`` (NaN where the file has no such
      column). An epoch whose tensor is not a vector of the announced
      length is left out; of repeated epochs the latest recording
      (`plugin_series.latest_by_step`) wins.
    """
    valid = [datum for datum in datums
             if np.size(datum.numpy) == len(columns)]
    by_epoch = {
        int(datum.step): np.asarray(datum.numpy, dtype=np.float64).reshape(-1)
        for datum in plugin_series.latest_by_step(valid)}
    width = len(metadata.VARIABLE_STAT_NAMES)
    if not by_epoch:
        return np.zeros(0, dtype=np.int64), np.zeros((0, width))
    epochs = np.array(sorted(by_epoch), dtype=np.int64)
    raw = np.stack([by_epoch[epoch] for epoch in epochs.tolist()])
    matrix = np.full((len(epochs), width), np.nan)
    for position, name in enumerate(metadata.VARIABLE_STAT_NAMES):
        if name in columns:
            matrix[:, position] = raw[:, columns.index(name)]
    return epochs, matrix


def stat_rows(datums, columns):
    """``{epoch: row of stat_matrix}``, for lookups of single epochs."""
    epochs, matrix = stat_matrix(datums, columns)
    return dict(zip(epochs.tolist(), matrix))


def stat_index(name):
    """Column of ``name`` in `stat_matrix` / `stat_rows` rows."""
    return metadata.VARIABLE_STAT_NAMES.index(name)


def max_finite(values):
    """The largest finite value of ``values``, or ``None``."""
    array = np.asarray(list(values), dtype=np.float64)
    array = array[np.isfinite(array)]
    return float(array.max()) if array.size else None


def _nested_or_none(array):
    """``array.tolist()`` with ``None`` for every non-finite element."""
    array = np.asarray(array, dtype=np.float64)
    finite = np.isfinite(array)
    if finite.all():
        return array.tolist()
    values = array.astype(object)
    values[~finite] = None
    return values.tolist()


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
    """`_nested_or_none`, with integral values as Python ints.

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
        return _nested_or_none(array)
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
    return _nested_or_none(gradient), _nested_or_none(accumulated)


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
    """

    def __init__(self, entries, matrices):
        """Args: entries, and per entry the ``(epochs, matrix)`` of
        `stat_matrix`."""
        self.entries = list(entries)
        self.epochs = np.unique(np.concatenate(
            [steps for steps, _ in matrices] + [np.zeros(0, np.int64)]))
        self.aligned, self.present, self.highest = [], [], []
        for steps, matrix in matrices:
            aligned, present = align(steps, matrix, self.epochs)
            self.aligned.append(aligned)
            self.present.append(present)
            self.highest.append(highest_arrays(aligned, present))


def _rows_or_none(array, present):
    """`_nested_compact` rows (or values) with ``None`` where not present."""
    rows = _nested_compact(array) if np.ndim(array) > 1 else \
        _nested_or_none(array)
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
    rows = in_range(table.epochs, start, end)
    if selected:
        rows &= np.logical_or.reduce([table.present[i] for i in selected])
    else:
        rows &= False
    epochs = table.epochs[rows]
    starts = bucket_starts(epochs, points)
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
                "highest_gradient": _nested_or_none(gradient),
                "highest_accumulated": _nested_or_none(accumulated),
            })
        else:
            has = present_buckets(present, starts)
            parts = [envelope(values, starts)
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
        "buckets": None if starts is None else bucket_bounds(epochs, starts),
        "variables": variables,
    }


# -- reduction of long series -------------------------------------------------


def in_range(epochs, start=None, end=None):
    """Boolean mask of the ``epochs`` within ``[start, end]`` (``None``: open)."""
    epochs = np.asarray(epochs, dtype=np.int64)
    mask = np.ones(len(epochs), dtype=bool)
    if start is not None:
        mask &= epochs >= start
    if end is not None:
        mask &= epochs <= end
    return mask


def bucket_starts(epochs, points):
    """Where the buckets of ``epochs`` begin, or ``None`` when not reduced.

    The steps from the first epoch to the last are split into
    ``points - 1`` spans of equal length, and the last epoch is a bucket
    of its own: bucket ``k`` holds the epochs ``e`` with
    ``floor((e - first) * (points - 1) / (last - first)) == k`` (so the
    latest values of a live run are exact). Buckets without an epoch are
    left out. Nothing is reduced while there are at most ``points``
    epochs.

    Args:
      epochs: Sorted distinct int epochs.
      points: The ``points`` parameter, or ``None``.

    Returns:
      ``None``, or the int64 indices into ``epochs`` of each bucket's first
      epoch (the input of ``np.ufunc.reduceat``).
    """
    epochs = np.asarray(epochs, dtype=np.int64)
    if points is None or len(epochs) <= points:
        return None
    first, last = int(epochs[0]), int(epochs[-1])
    offsets = (epochs - first).astype(object)  # exact for any int64 step
    index = np.array((offsets * (points - 1)) // (last - first),
                     dtype=np.int64)
    return np.flatnonzero(np.diff(index, prepend=-1)).astype(np.int64)


def bucket_bounds(epochs, starts):
    """``{"first": [...], "last": [...]}``: each bucket's first and last epoch."""
    epochs = np.asarray(epochs, dtype=np.int64)
    ends = np.append(starts[1:], len(epochs)) - 1
    return {"first": epochs[starts].tolist(), "last": epochs[ends].tolist()}


def envelope(values, starts):
    """Per bucket, the smallest and largest finite value along axis 0.

    Args:
      values: An array whose first axis follows the epochs (NaN where
        absent).
      starts: Output of `bucket_starts`.

    Returns:
      ``(low, high)`` arrays with one row per bucket; NaN where the bucket
      has no finite value.
    """
    values = np.asarray(values, dtype=np.float64)
    values = np.where(np.isfinite(values), values, np.nan)
    with np.errstate(invalid="ignore"):
        return (np.fmin.reduceat(values, starts, axis=0),
                np.fmax.reduceat(values, starts, axis=0))


def present_buckets(present, starts):
    """Whether each bucket holds at least one epoch that has data."""
    return np.logical_or.reduceat(np.asarray(present, dtype=bool), starts)


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
    for name in metadata.GLOBAL_STAT_NAMES:
        data = tag_to_data.get(metadata.scalar_tag(source, name))
        if data:
            by_stat[name] = {int(d.step): float(d.value)
                             for d in plugin_series.latest_by_step(data)}
    epochs = sorted({step for values in by_stat.values() for step in values})
    series = {
        name: [finite_or_none(values.get(epoch)) for epoch in epochs]
        for name, values in by_stat.items()
    }
    return epochs, series


def reduced_scalars(epochs, series, points=None, start=None, end=None):
    """`scalar_series` within a step range, reduced to ``points`` buckets.

    Returns:
      The ``epochs``, ``buckets`` and ``series`` (or, with buckets,
      ``min`` and ``max``) fields of the `/scalars` body.
    """
    mask = in_range(epochs, start, end)
    kept = np.asarray(epochs, dtype=np.int64)[mask]
    starts = bucket_starts(kept, points)
    indices = np.flatnonzero(mask).tolist()
    if starts is None:
        return {"epochs": kept.tolist(), "buckets": None,
                "series": {name: [values[i] for i in indices]
                           for name, values in series.items()}}
    body = {"epochs": kept.tolist(), "buckets": bucket_bounds(kept, starts),
            "min": {}, "max": {}}
    for name, values in series.items():
        array = np.array([values[i] for i in indices], dtype=np.float64)
        low, high = envelope(array, starts)
        body["min"][name] = _nested_or_none(low)
        body["max"][name] = _nested_or_none(high)
    return body


# -- per-step table ------------------------------------------------------


def step_columns(content):
    """The per-step table's ``(l2 column, max_abs column)`` indices."""
    columns = content.get("columns")
    if not (isinstance(columns, list) and all(isinstance(c, str)
                                              for c in columns)):
        columns = list(metadata.STEP_COLUMNS)
    return tuple(columns.index(name) if name in columns else None
                 for name in metadata.STEP_COLUMNS)


def step_epochs(datums, content):
    """Per-epoch lists of per-step ``l2`` and ``max_abs`` values.

    Of repeated epochs, the latest recording (`plugin_series.latest_by_step`).

    Raises:
      ValueError: When a tensor is not a ``(steps, columns)`` table.
    """
    l2_column, max_column = step_columns(content)
    epochs = []
    for datum in plugin_series.latest_by_step(datums):
        table = np.asarray(datum.numpy, dtype=np.float64)
        if table.ndim != 2:
            raise ValueError("per-step tensor of epoch %r has shape %r"
                             % (datum.step, table.shape))
        epochs.append({
            "epoch": int(datum.step),
            "l2": _column(table, l2_column),
            "max_abs": _column(table, max_column),
        })
    return epochs


def _column(table, index):
    if index is None or index >= table.shape[1]:
        return [None] * table.shape[0]
    return finite_list(table[:, index])


# -- heatmaps -----------------------------------------------------------------


def heatmap_layout(content):
    """Channel order and scale statistics of a heatmap series.

    Returns:
      ``{channel name: (position in the tensor, scale statistic)}`` for the
      channels of ``metadata.HEATMAP_CHANNELS`` the series has.
    """
    channels = content.get("channels")
    scales = content.get("channel_scales")
    if not (isinstance(channels, list) and isinstance(scales, list)
            and len(channels) == len(scales)):
        channels = list(metadata.HEATMAP_CHANNELS)
        scales = list(metadata.HEATMAP_CHANNEL_SCALES)
    layout = {}
    for position, (channel, scale) in enumerate(zip(channels, scales)):
        if channel in metadata.HEATMAP_CHANNELS and scale in \
                metadata.VARIABLE_STAT_NAMES:
            layout[channel] = (position, scale)
    return layout


def decades(content):
    """The uint8 code range in decades (the writer's, else the default)."""
    value = content.get("decades")
    if isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value) and value > 0:
        return float(value)
    return metadata.HEATMAP_DECADES


def decode_channel(plane, encoding, scale, content):
    """Float values of one stored heatmap channel.

    Args:
      plane: The channel's ``(rows, cols)`` array as stored.
      encoding: ``"uint8"`` or ``"float32"``.
      scale: The same variable and epoch's value of the channel's scale
        statistic (``NaN`` when unknown; a uint8 code of 0 still decodes to
        0 and 254/255 to ±Inf/NaN).
      content: The series' parsed content (for ``decades``).

    Raises:
      ValueError: For an unknown encoding.
    """
    if encoding == "float32":
        return np.asarray(plane, dtype=np.float64)
    if encoding == "uint8":
        return stats.decode_log_uint8(plane, scale, decades(content))
    raise ValueError("unknown heatmap encoding %r" % (encoding,))


def channel_body(values, scale_over_epochs):
    """The JSON of one decoded channel (see docs/API.md, ``/heatmap``)."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = np.isfinite(flat)
    return {
        "values": finite_list(flat),
        "nan": np.flatnonzero(np.isnan(flat)).tolist(),
        "inf": np.flatnonzero(np.isinf(flat)).tolist(),
        "max": float(flat[finite].max()) if finite.any() else None,
        "scale": scale_over_epochs,
    }


def heatmap_channels(tensor, content, rows, epoch):
    """Decoded channels of one heatmap epoch.

    Args:
      tensor: The stored ``(channels, rows, cols)`` array of ``epoch``.
      content: The heatmap series' parsed content.
      rows: `stat_rows` of the same variable (may be empty).
      epoch: The epoch of ``tensor``.

    Returns:
      ``{channel name: channel body}`` for ``metadata.HEATMAP_CHANNELS``.

    Raises:
      ValueError: When the tensor does not have the announced layout.
    """
    tensor = np.asarray(tensor)
    layout = heatmap_layout(content)
    if tensor.ndim != 3:
        raise ValueError("heatmap tensor has shape %r" % (tensor.shape,))
    encoding = content.get("encoding", "uint8")
    row = rows.get(epoch)
    body = {}
    for channel in metadata.HEATMAP_CHANNELS:
        if channel not in layout or layout[channel][0] >= tensor.shape[0]:
            continue
        position, scale_name = layout[channel]
        column = stat_index(scale_name)
        scale = float(row[column]) if row is not None else float("nan")
        values = decode_channel(tensor[position], encoding, scale, content)
        overall = max_finite(r[column] for r in rows.values())
        body[channel] = channel_body(values, overall)
    return body


# -- float32 data -------------------------------------------------------------


class JSONText(str):
    """JSON text that `dumps` embeds as it is, as a value of a dict.

    Large float32 arrays are written to text directly (`float32_json`):
    building Python floats and letting `json` print them costs twice the
    time for a longer result.
    """


def float32_json(array):
    """JSON text of a float32 array: nested lists of the shortest numbers.

    ``float(np.float32(x))`` prints with up to 17 significant digits, of
    which only the first 6 to 9 mean anything. Here each number is the
    shortest decimal that reads back as the same float32 (numpy's
    ``repr``), so ``Math.fround`` (or ``numpy.float32``) recovers the
    stored value exactly and the text is about 40 % shorter; ``null``
    where the value is non-finite.

    Args:
      array: Any array; it is converted to float32 first (values computed
        in float64 from float32 data carry no more meaning than that).

    Returns:
      A `JSONText`.
    """
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 0:
        return JSONText(dumps(float32_or_none(array)))
    if array.size == 0:
        return JSONText(dumps(np.zeros(array.shape).tolist()))
    text = array.astype(str)
    finite = np.isfinite(array)
    if not finite.all():
        text[~finite] = "null"
    parts = ["[" + ",".join(row) + "]"
             for row in text.reshape(-1, array.shape[-1]).tolist()]
    for size in reversed(array.shape[:-1]):
        parts = ["[" + ",".join(parts[i:i + size]) + "]"
                 for i in range(0, len(parts), size)]
    return JSONText(parts[0])


def float32_or_none(value):
    """One number as `float32_json` writes it; ``None`` if non-finite."""
    if value is None:
        return None
    value = np.float32(value)
    return float(str(value)) if np.isfinite(value) else None


# -- recurrent layers ---------------------------------------------------------

# Fields of a ``timesteps`` series' content describing the layer (from
# `timesteps.describe` and `stats.timestep_view`), returned as they are.
TIMESTEP_FIELDS = (
    "class",
    "inner_class",
    "return_sequences",
    "bidirectional",
    "merge_mode",
    "direction_count",
    "direction_names",
    "direction_ranges",
    "samples",
    "timesteps",
    "channels",
    "time_block",
    "channel_block",
)

# Timestep gradients need probe samples: the writer only has this source.
TIMESTEP_SOURCE = "probe"


def recurrent_layers(parsed):
    """The recurrent-layer series of one run, grouped by layer.

    Args:
      parsed: Output of `parse_listing` for one run.

    Returns:
      ``{layer: {"timesteps": tag or None, "timestep_norms": tag or None,
      "content": content of the timesteps series or None, "gates":
      {source: tag}, "recurrent_kind": str or None}}`` for every layer
      with a ``timesteps`` (probe source) or a ``gates`` series. Series
      whose ``layer`` field is not a string are left out.
    """
    layers = {}
    for tag, content in sorted(parsed.items()):
        kind = content["kind"]
        layer = content.get("layer")
        if not isinstance(layer, str) or kind not in (
                metadata.KIND_TIMESTEPS, metadata.KIND_TIMESTEP_NORMS,
                metadata.KIND_GATES):
            continue
        if kind != metadata.KIND_GATES and \
                content["source"] != TIMESTEP_SOURCE:
            continue
        entry = layers.setdefault(layer, {
            "timesteps": None, "timestep_norms": None, "content": None,
            "gates": {}, "recurrent_kind": None})
        if kind == metadata.KIND_TIMESTEPS:
            entry["timesteps"], entry["content"] = tag, content
        elif kind == metadata.KIND_TIMESTEP_NORMS:
            entry["timestep_norms"] = tag
        else:
            entry["gates"][content["source"]] = tag
            if isinstance(content.get("recurrent_kind"), str):
                entry["recurrent_kind"] = content["recurrent_kind"]
    return {layer: entry for layer, entry in layers.items()
            if entry["timesteps"] is not None or entry["gates"]}


def layer_order(parsed, layers):
    """``layers`` in the order they appear in the model.

    The series carry no layer index, but every variable's statistics have
    its position in the model's trainable variables, and a variable's name
    starts with its top-level layer's name (``encoder/lstm_cell/kernel``).
    A layer comes at the smallest index of its variables; layers without
    variables (e.g. a `Masking` named in ``timestep_layers``) come last,
    alphabetically.
    """
    first = {}
    for source in metadata.SOURCES:
        for entry in variable_entries(parsed, source):
            top = entry["name"].split("/", 1)[0]
            first[top] = min(first.get(top, entry["index"]), entry["index"])
    return sorted(layers, key=lambda layer: (
        layer not in first, first.get(layer, 0), layer))


def timestep_description(content):
    """The layer description fields of a ``timesteps`` content.

    A field the content lacks (or a layer with only ``gates`` series,
    ``content=None``) is ``None``.
    """
    content = content or {}
    return {field: content.get(field) for field in TIMESTEP_FIELDS}


def timestep_values(tensor):
    """The stored ``(samples, T', C')`` or ``(samples, C')`` gradient.

    Raises:
      ValueError: For any other rank.
    """
    tensor = np.asarray(tensor)
    if tensor.ndim not in (2, 3):
        raise ValueError("timesteps tensor has shape %r" % (tensor.shape,))
    return float32_json(tensor)


def timestep_norms(tensor, values_shape=None):
    """``(l2, valid)`` planes of a stored ``(2, samples, T')`` norms tensor.

    Args:
      tensor: The ``timestep_norms`` tensor of one epoch.
      values_shape: Shape of the same epoch's timesteps tensor, if known:
        the norms must have its samples and timesteps.

    Raises:
      ValueError: When the shapes do not match the format.
    """
    tensor = np.asarray(tensor, dtype=np.float64)
    if tensor.ndim != 3 or tensor.shape[0] != len(
            metadata.TIMESTEP_NORM_CHANNELS):
        raise ValueError("timestep_norms tensor has shape %r"
                         % (tensor.shape,))
    if values_shape is not None and tuple(tensor.shape[1:]) != tuple(
            values_shape[:2]):
        raise ValueError("timestep_norms tensor has shape %r for values of "
                         "shape %r" % (tensor.shape, tuple(values_shape)))
    channels = list(metadata.TIMESTEP_NORM_CHANNELS)
    return tensor[channels.index("l2")], tensor[channels.index("valid")]


def epoch_l2(norms_by_epoch):
    """Per-timestep summaries over the samples of every epoch's norms.

    Only entries with ``valid > 0`` (not entirely masked) count. The
    figures are computed in float64, unweighted by the valid fraction; a
    non-finite norm makes its timestep's figures non-finite (``None``), and
    so does having no valid sample. ``std`` is the population standard
    deviation (``ddof=0``).

    Args:
      norms_by_epoch: ``{epoch: stored (2, samples, T') tensor}``.

    Returns:
      `JSONText` of ``{"epochs": [...], "mean", "std", "min", "max":
      [[per timestep] per epoch]}``.
    """
    epochs = sorted(norms_by_epoch)
    lists = {"mean": [], "std": [], "min": [], "max": []}
    for epoch in epochs:
        l2, valid = timestep_norms(norms_by_epoch[epoch])
        counted = valid > 0
        count = counted.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counted, l2, 0.0).sum(axis=0) / count
            spread = np.where(counted, np.square(l2 - mean), 0.0)
            std = np.sqrt(spread.sum(axis=0) / count)
            low = np.where(counted, l2, np.inf).min(axis=0)
            high = np.where(counted, l2, -np.inf).max(axis=0)
        nan = np.where(counted, np.isnan(l2), False).any(axis=0)
        for name, figures in (("mean", mean), ("std", std), ("min", low),
                              ("max", high)):
            figures = np.where((count > 0) & ~nan, figures, np.nan)
            lists[name].append(float32_json(figures))
    body = {name: JSONText("[" + ",".join(parts) + "]")
            for name, parts in lists.items()}
    body["epochs"] = epochs
    return JSONText(dumps(body))


# -- gates --------------------------------------------------------------------


def gate_columns(content):
    """``(gate names, statistic names)`` of a ``gates`` or ``gate_heatmap``
    content; the statistics default to ``GATE_STAT_NAMES``.

    Raises:
      ValueError: When ``gates`` is not a non-empty list of names.
    """
    gates, names = content.get("gates"), content.get("stats")
    if not (isinstance(gates, list) and gates
            and all(isinstance(g, str) for g in gates)):
        raise ValueError("gates content has malformed gates %r" % (gates,))
    if not (isinstance(names, list) and names
            and all(isinstance(n, str) for n in names)):
        names = list(metadata.GATE_STAT_NAMES)
    return list(gates), list(names)


def gate_rows(content):
    """The ``rows`` of a ``gates`` content: ``[{direction, role, variable}]``.

    Raises:
      ValueError: When the field is not a list of such objects.
    """
    rows = content.get("rows")
    if not isinstance(rows, list) or not all(
            isinstance(row, dict) and all(
                isinstance(row.get(key), str)
                for key in ("direction", "role", "variable"))
            for row in rows):
        raise ValueError("gates content has malformed rows %r" % (rows,))
    return [{key: row[key] for key in ("direction", "role", "variable")}
            for row in rows]


def gate_table(datums, content):
    """Every epoch's per-gate statistics of one layer.

    Args:
      datums: ``TensorDatum``s of one ``gates`` series.
      content: Its parsed content.

    Returns:
      ``(epochs, values)``: sorted epochs and, per epoch, the float64
      ``[row][gate][stat]`` table with ``None`` where non-finite. Of
      repeated epochs the latest recording (`plugin_series.latest_by_step`).

    Raises:
      ValueError: When a tensor is not ``(rows, gates, stats)`` as the
        content announces.
    """
    gates, names = gate_columns(content)
    shape = (len(gate_rows(content)), len(gates), len(names))
    by_epoch = {}
    for datum in plugin_series.latest_by_step(datums):
        table = np.asarray(datum.numpy, dtype=np.float64)
        if table.shape != shape:
            raise ValueError("gates tensor of epoch %r has shape %r, not %r"
                             % (datum.step, table.shape, shape))
        by_epoch[int(datum.step)] = table
    epochs = sorted(by_epoch)
    return epochs, [_nested_or_none(by_epoch[epoch]) for epoch in epochs]


def gate_planes(tensor, gate_count):
    """A stored ``(gates, rows, cols)`` gate heatmap, checked.

    Raises:
      ValueError: When it is not a 3-D tensor with ``gate_count`` planes.
    """
    tensor = np.asarray(tensor, dtype=np.float32)
    if tensor.ndim != 3 or tensor.shape[0] != gate_count:
        raise ValueError("gate heatmap tensor has shape %r for %r gates"
                         % (tensor.shape, gate_count))
    return tensor


def gate_heatmap_scale(tensors):
    """The largest finite cell over every epoch and gate, or ``None``."""
    largest = None
    for tensor in tensors:
        tensor = np.asarray(tensor, dtype=np.float32)
        finite = tensor[np.isfinite(tensor)]
        if finite.size and (largest is None or finite.max() > largest):
            largest = finite.max()
    return float32_or_none(largest)
