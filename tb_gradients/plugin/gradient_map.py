"""The gradient map: every variable over every window in one picture.

A deep model has hundreds of variables; one line each is spaghetti. The
map is a matrix, rows = variables in model order, columns = windows,
colour = log10 of one statistic (the gradient's RMS by default), so that
vanishing, exploding and dead blocks and single spikes show at once. It is
served as one compact payload: log-quantised uint8 codes, base64, built
from the run's cached statistics table (`plugin.stats.StatsTable`), with
each variable's depth and role (`analysis.structure`). The functions are
pure; `Handler` serves ``/gradient_map``.
"""

import base64

import numpy as np
from tensorboard import errors

from tb_gradients import json_values
from tb_gradients.analysis import structure
from tb_gradients.plugin import handler
from tb_gradients.plugin import stats as plugin_stats

# The statistics the map can show (all magnitudes, drawn on a log scale):
# ``rms`` is ‖G_e‖₂ / √size (docs/STATISTICS.md), the others are columns.
MAP_STATS = ("rms", "mean_abs", "max_abs", "l2", "std", "norm",
             "dissolving_norm", "accumulated_max_abs")
DEFAULT_MAP_STAT = "rms"

# Codes of a cell: no record, zero (or not positive), log-spaced levels
# from ``low`` to ``high``, +Inf, NaN.
CODE_MISSING, CODE_ZERO, CODE_FIRST, CODE_LAST = 0, 1, 2, 253
CODE_INF, CODE_NAN = 254, 255


def map_values(table, stat):
    """``(values, present)``: the ``(variables, windows)`` matrix of
    ``stat`` over a `StatsTable`'s entries and epochs, and where a record
    exists."""
    if not table.entries:
        shape = (0, len(table.epochs))
        return np.zeros(shape), np.zeros(shape, bool)
    present = np.stack(table.present)
    if stat == "rms":
        l2 = np.stack([a[:, plugin_stats.stat_index("l2")]
                       for a in table.aligned])
        size = np.stack([a[:, plugin_stats.stat_index("size")]
                         for a in table.aligned])
        with np.errstate(invalid="ignore", divide="ignore"):
            values = l2 / np.sqrt(size)
    else:
        column = plugin_stats.stat_index(stat)
        values = np.stack([a[:, column] for a in table.aligned])
    return values, present


def encode_log_codes(values, present):
    """``(codes, low, high)``: uint8 codes of ``values`` (`CODE_*`), with
    ``low`` and ``high`` the log10 of the smallest and largest finite
    positive value (``None`` when there is none). Levels are linear in
    log10 between them, so a code is within ``(high - low) / 502``
    decades of its value."""
    values = np.asarray(values, np.float64)
    codes = np.full(values.shape, CODE_ZERO, np.uint8)
    positive = np.isfinite(values) & (values > 0)
    low = high = None
    if positive.any():
        logs = np.log10(values[positive])
        low, high = float(logs.min()), float(logs.max())
        span = max(high - low, 1e-12)
        levels = CODE_FIRST + np.rint(
            (logs - low) / span * (CODE_LAST - CODE_FIRST))
        codes[positive] = levels.astype(np.uint8)
    codes[np.isposinf(values)] = CODE_INF
    codes[np.isnan(values)] = CODE_NAN
    codes[~np.asarray(present, bool)] = CODE_MISSING
    return codes, low, high


def gradient_map_body(table, stat):
    """The ``/gradient_map`` body (docs/API.md) of a `StatsTable`."""
    values, present = map_values(table, stat)
    codes, low, high = encode_log_codes(values, present)
    names = [entry["name"] for entry in table.entries]
    places = structure.block_structure(names)
    variables = []
    for position, entry in enumerate(table.entries):
        place = places[position] if places else None
        variables.append({
            "name": entry["name"], "layer": entry["layer"],
            "shape": entry["shape"],
            "depth": place.depth if place else None,
            "role": place.role if place else None,
        })
    return {
        "stat": stat, "steps": table.epochs.tolist(),
        "variables": variables,
        "structure": places is not None,
        "low": low, "high": high,
        "codes": base64.b64encode(codes.tobytes()).decode("ascii"),
    }


def parse_map_stat(text):
    """The ``stat`` parameter: one of `MAP_STATS` (`DEFAULT_MAP_STAT` when
    absent or empty).

    Raises:
      ValueError: for any other name.
    """
    if text is None or text == "":
        return DEFAULT_MAP_STAT
    if text not in MAP_STATS:
        raise ValueError("must be one of %r" % (MAP_STATS,))
    return text


class Handler(handler.Handler):
    """The ``/gradient_map`` route."""

    def gradient_map(self, ctx, experiment, run, source, stat):
        """The gradient map of one run and source, as gzip JSON, kept while
        the run's series are unchanged."""
        entries, parsed, signature = self._data.variables(ctx, experiment,
                                                          run, source)
        key = ("gradient_map", experiment, run, source, stat, signature)

        def build():
            table = self._data.stats_table(ctx, experiment, run, source,
                                           entries, parsed, signature)
            if not len(table.epochs):
                raise errors.NotFoundError(
                    "No statistics recorded yet for run %r and source %r"
                    % (run, source))
            body = {"run": run, "source": source}
            body.update(gradient_map_body(table, stat))
            return json_values.gzip_json(body)

        return self._data.cache.get_or_build(key, build)
