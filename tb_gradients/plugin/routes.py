"""The "Gradients" TensorBoard plugin: HTTP routes over the data provider.

Modelled on TensorBoard's histograms plugin: each route is a thin
``*_route`` that reads its parameters and calls a ``*_impl`` method, which
reads through ``context.data_provider`` only (so it works with the Python
loader and with the Rust data server of ``--load_fast=true``) and raises
``tensorboard.errors`` for bad requests. docs/API.md documents every route.
"""

import functools
import os
import re
import threading

import numpy as np
from werkzeug import wrappers

from tensorboard import errors
from tensorboard import plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from tensorboard.util import tb_logging

from tb_gradients.format import metadata
from tb_gradients.plugin import assets as plugin_assets
from tb_gradients.plugin import cache as plugin_cache
from tb_gradients.plugin import findings as plugin_findings
from tb_gradients.plugin import heatmaps as plugin_heatmaps
from tb_gradients import json_values
from tb_gradients.plugin import listing as plugin_listing
from tb_gradients.plugin import params as plugin_params
from tb_gradients.plugin import recurrent as plugin_recurrent
from tb_gradients.plugin import series as plugin_series
from tb_gradients.plugin import stats as plugin_stats
logger = tb_logging.get_logger()

# Our series are small and few per epoch: read every stored sample. (How
# many are stored is set by `GradientsLoader.fix_flags`.)
_DOWNSAMPLE = 10**9

_SCALARS_PLUGIN = "scalars"

FRONTEND_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "frontend")

# Fixed at import: a request can only name one of these files.
ASSETS = plugin_assets.asset_map(FRONTEND_DIR)


# What `_guarded` logs and answers. Both are fixed texts so that a log or
# a test can tell the last line of defence from the typed errors the routes
# raise on purpose: on intact data the guard is never meant to answer.
GUARD_WARNING = "Gradients plugin could not read data for %r"
GUARD_NOT_FOUND = "No readable gradient data for this request"


def _guarded(route):
    """Makes a route answer 4xx, never 500, on data it cannot parse.

    Parameter errors are raised as `errors.InvalidArgumentError` and absent
    data as `errors.NotFoundError` by the routes themselves; anything else
    that escapes (a series whose shape or content does not match the
    format) is reported as data not found, and logged with its traceback
    for whoever runs the server.
    """

    @functools.wraps(route)
    def wrapper(self, request):
        try:
            return route(self, request)
        except errors.PublicError:
            raise
        except Exception as error:  # the data, not the request, is at fault
            logger.warning(GUARD_WARNING, request.full_path, exc_info=True)
            raise errors.NotFoundError("%s (%s: %s)" % (
                GUARD_NOT_FOUND, type(error).__name__, error))

    return wrapper


def _json_response(request, body):
    """Strict JSON; ``body`` may be gzip-compressed JSON (cached bodies,
    `json_values.gzip_json`), which is sent as it is to clients that accept
    gzip and decompressed for the others."""
    if isinstance(body, bytes):
        return http_util.Respond(request, body, "application/json",
                                 content_encoding="gzip")
    return http_util.Respond(request, json_values.dumps(body),
                             "application/json")


def _required(request, name):
    value = request.args.get(name)
    if value is None or value == "":
        raise errors.InvalidArgumentError(
            "Missing required parameter %r. Received: %s=%r"
            % (name, name, value))
    return value


def _source(request):
    source = _required(request, "source")
    if source not in metadata.SOURCES:
        raise errors.InvalidArgumentError(
            "Parameter 'source' must be one of %r. Received: source=%r"
            % (metadata.SOURCES, source))
    return source


def _epoch(request):
    text = request.args.get("epoch")
    if text is None or text == "":
        return None
    epoch = plugin_params.parse_integer(text)
    if epoch is None:
        raise errors.InvalidArgumentError(
            "Parameter 'epoch' must be an integer. Received: epoch=%r"
            % (text,))
    return epoch


def _stats(request):
    text = request.args.get("stats")
    try:
        return plugin_params.parse_stat_names(text)
    except ValueError as error:
        raise errors.InvalidArgumentError(
            "Parameter 'stats' must be a comma-separated list of names of %r "
            "(%s). Received: stats=%r"
            % (metadata.VARIABLE_STAT_NAMES, error, text))


def _filter(request):
    text = request.args.get("filter")
    try:
        return plugin_params.compile_filter(text)
    except (re.error, RecursionError, OverflowError) as error:
        raise errors.InvalidArgumentError(
            "Parameter 'filter' is not a valid regular expression (%s). "
            "Received: filter=%r" % (error, text))


def _points(request):
    text = request.args.get("points")
    try:
        return plugin_params.parse_points(text)
    except ValueError as error:
        raise errors.InvalidArgumentError(
            "Parameter 'points' %s. Received: points=%r" % (error, text))


def _step_range(request):
    texts = {name: request.args.get(name) for name in ("start", "end")}
    try:
        return plugin_params.parse_step_range(texts["start"], texts["end"])
    except ValueError as error:
        name, message = error.args
        raise errors.InvalidArgumentError(
            "Parameter %r %s. Received: start=%r, end=%r"
            % (name, message, texts["start"], texts["end"]))


def _context(request):
    return (plugin_util.context(request.environ),
            plugin_util.experiment_id(request.environ))


class GradientsPlugin(base_plugin.TBPlugin):
    """Serves the gradient statistics, heatmaps and the frontend."""

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context, assets_dir=None):
        """Creates the plugin.

        Args:
          context: A `base_plugin.TBContext`; only its ``data_provider`` is
            used.
          assets_dir: Folder of the static assets; the package's frontend
            when ``None`` (other values are for tests).
        """
        self._data_provider = context.data_provider
        self._cache = plugin_cache.BodyCache()
        # `plugin.stats.StatsTable`s, large (variables x epochs x 19): few.
        self._tables = plugin_cache.BodyCache(max_entries=4)
        # Heatmap series of single variables (`_heatmap_series`).
        self._series = plugin_cache.BodyCache(max_entries=64)
        self._known_contents = {}
        self._contents_lock = threading.Lock()
        if assets_dir is None:
            self._assets_dir, self._assets = FRONTEND_DIR, dict(ASSETS)
        else:
            self._assets_dir = assets_dir
            self._assets = plugin_assets.asset_map(assets_dir)

    def clear_caches(self):
        """Forgets every cached body, table and series (benchmarks of the
        cold path)."""
        for cache in (self._cache, self._tables, self._series):
            cache.clear()

    def get_plugin_apps(self):
        apps = {
            "/runs": self.runs_route,
            "/variables": self.variables_route,
            "/scalars": self.scalars_route,
            "/variable_stats": self.variable_stats_route,
            "/steps": self.steps_route,
            "/heatmap": self.heatmap_route,
            "/timestep_layers": self.timestep_layers_route,
            "/timesteps": self.timesteps_route,
            "/gates": self.gates_route,
            "/gate_heatmap": self.gate_heatmap_route,
            "/findings": self.findings_route,
        }
        for name in self._assets:
            apps["/" + name] = functools.partial(self._asset_route, name)
        return apps

    def is_active(self):
        """Only asked when the data provider lists no ``gradients`` data.

        `data_plugin_names` already makes the tab active whenever a run has
        our series; without them there is nothing to show.
        """
        return False

    def data_plugin_names(self):
        return (metadata.PLUGIN_NAME,)

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js",
                                            tab_name="Gradients")

    # -- reading helpers ------------------------------------------------------

    def _list(self, ctx, experiment, runs=None, tags=None):
        return self._data_provider.list_tensors(
            ctx, experiment_id=experiment, plugin_name=metadata.PLUGIN_NAME,
            run_tag_filter=provider.RunTagFilter(runs=runs, tags=tags))

    def _read(self, ctx, experiment, runs, tags):
        return self._data_provider.read_tensors(
            ctx, experiment_id=experiment, plugin_name=metadata.PLUGIN_NAME,
            downsample=_DOWNSAMPLE,
            run_tag_filter=provider.RunTagFilter(runs=runs, tags=tags))

    def _contents(self, ctx, experiment, run, tags):
        """Parsed metadata content of some tags of a run (absent: left out).

        A series' metadata is fixed by its first event, so once read it is
        kept: a route that needs it then makes one data-provider call
        instead of two, which matters with the Rust data server, where each
        call is a gRPC round trip.
        """
        keys = [(experiment, run, tag) for tag in tags]
        with self._contents_lock:
            if all(key in self._known_contents for key in keys):
                return {key[2]: self._known_contents[key] for key in keys}
        listing = self._list(ctx, experiment, runs=[run], tags=tags)
        parsed = plugin_listing.parse_listing(listing.get(run, {}))
        with self._contents_lock:
            for tag, content in parsed.items():
                self._known_contents[(experiment, run, tag)] = content
        return parsed

    def _run_listing(self, ctx, experiment, run, source):
        """One run's series of ``source``; 404 if none.

        Returns:
          ``(parsed, signature)``: ``{tag: parsed content}`` and
          `plugin.cache.series_signature` of those tags.
        """
        listing = self._list(ctx, experiment, runs=[run]).get(run, {})
        parsed = plugin_listing.parse_listing(listing)
        parsed = plugin_listing.of_source(parsed, source)
        if not parsed:
            raise errors.NotFoundError(
                "No gradient data for run %r and source %r" % (run, source))
        return parsed, plugin_cache.series_signature(listing, parsed)

    def _variables(self, ctx, experiment, run, source):
        """``(variable entries, parsed, signature)`` of a run; 404 if none."""
        parsed, signature = self._run_listing(ctx, experiment, run, source)
        entries = plugin_listing.variable_entries(parsed, source)
        if not entries:
            raise errors.NotFoundError(
                "No variable statistics for run %r and source %r"
                % (run, source))
        return entries, parsed, signature

    # -- implementations ------------------------------------------------------

    def runs_impl(self, ctx, experiment):
        """Runs with gradient data: sources, window and logged epoch counts.

        The epoch count of a source is the number of distinct steps of its
        first variable's statistics series, which the writer logs at every
        logged epoch or window (a step recorded twice, by a restarted run,
        counts once). Counting needs a read; its result is kept while those
        series' last step and wall time (from the listing) are unchanged.
        The ``window`` (`plugin.series.run_window`) comes from the series'
        metadata.
        """
        listing = self._list(ctx, experiment)
        firsts = {}
        runs = []
        for run in sorted(listing):
            parsed = plugin_listing.parse_listing(listing[run])
            sources = plugin_listing.sources_present(parsed)
            if not sources:
                continue
            runs.append({"run": run, "sources": sources,
                         "window": plugin_series.run_window(parsed)})
            for source in sources:
                entries = plugin_listing.variable_entries(parsed, source)
                if entries:
                    firsts[(run, source)] = entries[0]["tag"]
        signature = tuple(
            (run, plugin_cache.series_signature(listing[run], [tag]))
            for (run, _), tag in sorted(firsts.items()))
        counts = self._cache.get_or_build(
            ("runs", experiment, signature),
            lambda: self._epoch_counts(ctx, experiment, firsts))
        for entry in runs:
            entry["epochs"] = max(counts.get((entry["run"], source), 0)
                                  for source in entry["sources"])
        return {"runs": runs}

    def _epoch_counts(self, ctx, experiment, firsts):
        """``{(run, source): samples of the tag firsts[(run, source)]}``."""
        if not firsts:
            return {}
        data = self._read(ctx, experiment,
                          runs=sorted({run for run, _ in firsts}),
                          tags=sorted(set(firsts.values())))
        return {key: len(plugin_series.steps_of(
                    data.get(key[0], {}).get(tag, ())))
                for key, tag in firsts.items()}

    def variables_impl(self, ctx, experiment, run, source):
        """The variables of one run and source, in model order."""
        entries, _, _ = self._variables(ctx, experiment, run, source)
        return {
            "run": run,
            "source": source,
            "variables": [
                {key: entry[key] for key in
                 ("name", "layer", "index", "shape", "size", "heatmap")}
                for entry in entries
            ],
        }

    def scalars_impl(self, ctx, experiment, run, source, points=None,
                     start=None, end=None):
        """The global ``gradients/<source>/<stat>`` scalars, as gzip JSON.

        Args:
          points: At most this many buckets (`plugin.buckets.bucket_starts`),
            or ``None`` for every epoch.
          start, end: The step range (inclusive), ``None`` for open ends.
        """
        tags = [metadata.scalar_tag(source, name)
                for name in metadata.GLOBAL_STAT_NAMES]
        tag_filter = provider.RunTagFilter(runs=[run], tags=tags)
        # Reading a long run's scalars costs far more than listing them:
        # the body is kept while their last step and wall time are the same.
        listing = self._data_provider.list_scalars(
            ctx, experiment_id=experiment, plugin_name=_SCALARS_PLUGIN,
            run_tag_filter=tag_filter).get(run, {})
        if not listing:
            raise errors.NotFoundError(
                "No gradient scalars for run %r and source %r" % (run, source))
        key = ("scalars", experiment, run, source, points, start, end,
               plugin_cache.series_signature(listing, tags))

        def build():
            data = self._data_provider.read_scalars(
                ctx, experiment_id=experiment, plugin_name=_SCALARS_PLUGIN,
                downsample=_DOWNSAMPLE, run_tag_filter=tag_filter)
            epochs, series = plugin_stats.scalar_series(data.get(run, {}),
                                                        source)
            if not series:
                raise errors.NotFoundError(
                    "No gradient scalars for run %r and source %r"
                    % (run, source))
            body = {"run": run, "source": source}
            body.update(plugin_stats.reduced_scalars(epochs, series, points,
                                                     start, end))
            return json_values.gzip_json(body)

        return self._cache.get_or_build(key, build)

    def variable_stats_impl(self, ctx, experiment, run, source, pattern=None,
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
        entries, parsed, signature = self._variables(ctx, experiment, run,
                                                     source)
        names = tuple(names or metadata.VARIABLE_STAT_NAMES)
        key = ("variable_stats", experiment, run, source,
               None if pattern is None else pattern.pattern, names, points,
               start, end, signature)

        def build():
            table = self._stats_table(ctx, experiment, run, source, entries,
                                      parsed, signature)
            selected = [i for i, entry in enumerate(table.entries)
                        if pattern is None or pattern.search(entry["name"])]
            body = {"run": run, "source": source}
            body.update(plugin_stats.variable_stats_body(
                table, selected, names, points, start, end))
            return json_values.gzip_json(body)

        return self._cache.get_or_build(key, build)

    def _stats_table(self, ctx, experiment, run, source, entries, parsed,
                     signature):
        """The `plugin.stats.StatsTable` of a run and source (`_variables`'
        output), kept while the series are unchanged: one read of all
        their series (one data-provider call for the run's tags), shared
        by `/variable_stats` and `/findings`."""

        def build():
            data = {}
            if entries:
                data = self._read(ctx, experiment, runs=[run],
                                  tags=[e["tag"] for e in entries]).get(
                                      run, {})
            return plugin_stats.StatsTable(entries, [
                plugin_stats.stat_matrix(data.get(entry["tag"], []),
                                         plugin_stats.stat_columns(
                                             parsed[entry["tag"]]))
                for entry in entries])

        return self._tables.get_or_build(
            ("table", experiment, run, source, signature), build)

    def steps_impl(self, ctx, experiment, run, source):
        """Per-step global L2 norm and max |g| of each epoch (training)."""
        tag = metadata.steps_tag(source)
        content = self._contents(ctx, experiment, run, [tag]).get(tag)
        if content is None or content["kind"] != metadata.KIND_STEPS:
            raise errors.NotFoundError(
                "No per-step gradient data for run %r and source %r"
                % (run, source))
        data = self._read(ctx, experiment, runs=[run], tags=[tag])
        epochs = plugin_stats.step_epochs(data.get(run, {}).get(tag, []),
                                          content)
        return {"run": run, "source": source, "epochs": epochs}

    def heatmap_impl(self, ctx, experiment, run, source, variable, epoch=None):
        """Decoded heatmap channels of one variable at one epoch.

        Args:
          epoch: An epoch number, or ``None`` for the latest one.
        """
        heatmap_tag = metadata.heatmap_tag(source, variable)
        stats_tag = metadata.variable_stats_tag(source, variable)
        tags = [heatmap_tag, stats_tag]
        listing = self._list(ctx, experiment, runs=[run],
                             tags=tags).get(run, {})
        parsed = plugin_listing.parse_listing(listing)
        content = parsed.get(heatmap_tag)
        if content is None or content["kind"] != metadata.KIND_HEATMAP:
            raise errors.NotFoundError(
                "No heatmap of variable %r for run %r and source %r"
                % (variable, run, source))
        # The frontend asks for several variables' heatmaps at once and for
        # every epoch while playing: the two series are read once while
        # they are unchanged.
        key = ("heatmap", experiment, run, source, variable,
               plugin_cache.series_signature(listing, tags))
        by_epoch, rows = self._series.get_or_build(
            key, lambda: self._heatmap_series(ctx, experiment, run, tags,
                                              parsed))
        epochs = sorted(by_epoch)
        if not epochs:
            raise errors.NotFoundError(
                "No heatmap of variable %r for run %r and source %r"
                % (variable, run, source))
        if epoch is None:
            epoch = epochs[-1]
        if epoch not in by_epoch:
            raise errors.NotFoundError(
                "No heatmap of variable %r at epoch %r for run %r and source "
                "%r" % (variable, epoch, run, source))
        tensor = by_epoch[epoch].numpy
        channels = plugin_heatmaps.heatmap_channels(tensor, content, rows,
                                                    epoch)
        return {
            "run": run, "source": source, "variable": variable,
            "epoch": epoch, "epochs": epochs,
            "shape": content.get("shape"),
            "view_shape": content.get("view_shape"),
            "block": content.get("block"),
            "rows": int(tensor.shape[1]), "cols": int(tensor.shape[2]),
            "encoding": content.get("encoding"),
            "channels": channels,
        }

    def _heatmap_series(self, ctx, experiment, run, tags, parsed):
        """``(by_epoch, rows)`` of a heatmap series and its variable's
        statistics (`plugin.stats.stat_rows`, for the channels' scales)."""
        heatmap_tag, stats_tag = tags
        data = self._read(ctx, experiment, runs=[run], tags=tags).get(run, {})
        rows = {}
        stats_content = parsed.get(stats_tag) or {}
        if stats_content.get("kind") == metadata.KIND_VARIABLE_STATS:
            rows = plugin_stats.stat_rows(
                data.get(stats_tag, []),
                plugin_stats.stat_columns(parsed[stats_tag]))
        return plugin_series.by_step(data.get(heatmap_tag, [])), rows

    def timestep_layers_impl(self, ctx, experiment, run):
        """The recurrent layers of one run, in model order.

        A layer is listed when it has timestep gradients (probe source) or
        per-gate statistics (any source). Its ``epochs`` are those of its
        timestep series, counted on the small ``timestep_norms`` series
        when the layer has one (the values tensor is larger by the
        channels); like `/runs`' counts they are kept while the series'
        last step and wall time are unchanged.
        """
        listing = self._list(ctx, experiment, runs=[run]).get(run, {})
        parsed = plugin_listing.parse_listing(listing)
        if not parsed:
            raise errors.NotFoundError("No gradient data for run %r" % (run,))
        layers = plugin_recurrent.recurrent_layers(parsed)
        counted = {layer: info["timestep_norms"] or info["timesteps"]
                   for layer, info in layers.items()
                   if info["timesteps"] is not None}
        signature = plugin_cache.series_signature(listing, counted.values())
        epochs = self._cache.get_or_build(
            ("timestep_layers", experiment, run, signature),
            lambda: self._series_epochs(ctx, experiment, run, counted))
        entries = []
        for layer in plugin_recurrent.layer_order(parsed, layers):
            info = layers[layer]
            entry = {"layer": layer}
            entry.update(
                plugin_recurrent.timestep_description(info["content"]))
            entry.update({
                "recurrent_kind": info["recurrent_kind"],
                "epochs": epochs.get(layer, []),
                "has_time": info["timestep_norms"] is not None,
                "gates": {source: source in info["gates"]
                          for source in metadata.SOURCES},
            })
            entries.append(entry)
        return {"run": run, "layers": entries}

    def _series_epochs(self, ctx, experiment, run, tags):
        """``{key: sorted epochs of the series tags[key]}`` of one run."""
        if not tags:
            return {}
        data = self._read(ctx, experiment, runs=[run],
                          tags=sorted(set(tags.values()))).get(run, {})
        return {key: plugin_series.steps_of(data.get(tag, []))
                for key, tag in tags.items()}

    def timesteps_impl(self, ctx, experiment, run, layer, epoch=None):
        """The gradient w.r.t. one layer's output at one epoch, as gzip JSON.

        Along with the epoch's values it summarises the per-timestep norms
        of every epoch (`plugin_recurrent.epoch_l2`), so the frontend can
        overlay epochs without a request per epoch. The body grows with
        samples x timesteps x channels (megabytes at the callback's
        limits) and the frontend polls it, so it is cached while both
        series are unchanged.

        Args:
          epoch: An epoch number, or ``None`` for the latest one.
        """
        source = plugin_recurrent.TIMESTEP_SOURCE
        tag = metadata.timesteps_tag(source, layer)
        norms_tag = metadata.timestep_norms_tag(source, layer)
        listing = self._list(ctx, experiment, runs=[run],
                             tags=[tag, norms_tag]).get(run, {})
        parsed = plugin_listing.parse_listing(listing)
        content = parsed.get(tag)
        if content is None or content["kind"] != metadata.KIND_TIMESTEPS:
            raise errors.NotFoundError(
                "No timestep gradients of layer %r for run %r" % (layer, run))
        norms_content = parsed.get(norms_tag)
        has_norms = (norms_content is not None and norms_content["kind"]
                     == metadata.KIND_TIMESTEP_NORMS)
        tags = [tag, norms_tag] if has_norms else [tag]
        key = ("timesteps", experiment, run, layer, epoch,
               plugin_cache.series_signature(listing, tags))
        return self._cache.get_or_build(key, lambda: json_values.gzip_json(
            self._timesteps_body(ctx, experiment, run, layer, epoch, content,
                                 tags)))

    def _timesteps_body(self, ctx, experiment, run, layer, epoch, content,
                        tags):
        data = self._read(ctx, experiment, runs=[run], tags=tags).get(run, {})
        by_epoch = plugin_series.by_step(data.get(tags[0], []))
        epochs = sorted(by_epoch)
        if not epochs:
            raise errors.NotFoundError(
                "No timestep gradients of layer %r for run %r" % (layer, run))
        if epoch is None:
            epoch = epochs[-1]
        if epoch not in by_epoch:
            raise errors.NotFoundError(
                "No timestep gradients of layer %r at epoch %r for run %r"
                % (layer, epoch, run))
        tensor = np.asarray(by_epoch[epoch].numpy)
        body = {"run": run, "layer": layer, "epoch": epoch, "epochs": epochs}
        body.update(plugin_recurrent.timestep_description(content))
        body.update({"values": plugin_recurrent.timestep_values(tensor),
                     "l2": None, "valid": None, "epoch_l2": None})
        norms = {}
        if len(tags) > 1:
            norms = {step: d.numpy for step, d in
                     plugin_series.by_step(data.get(tags[1], [])).items()}
        if norms and tensor.ndim == 3:
            if epoch in norms:
                l2, valid = plugin_recurrent.timestep_norms(norms[epoch],
                                                            tensor.shape)
                body["l2"] = json_values.float32_json(l2)
                body["valid"] = json_values.float32_json(valid)
            body["epoch_l2"] = plugin_recurrent.epoch_l2(norms)
        return body

    def gates_impl(self, ctx, experiment, run, source, layer):
        """Per-gate weight-gradient statistics of one LSTM/GRU layer."""
        tag = metadata.gates_tag(source, layer)
        content = self._contents(ctx, experiment, run, [tag]).get(tag)
        if content is None or content["kind"] != metadata.KIND_GATES:
            raise errors.NotFoundError(
                "No per-gate gradients of layer %r for run %r and source %r"
                % (layer, run, source))
        data = self._read(ctx, experiment, runs=[run], tags=[tag])
        epochs, values = plugin_recurrent.gate_table(
            data.get(run, {}).get(tag, []), content)
        gates, names = plugin_recurrent.gate_columns(content)
        if not epochs:
            raise errors.NotFoundError(
                "No per-gate gradients of layer %r for run %r and source %r"
                % (layer, run, source))
        return {
            "run": run, "source": source, "layer": layer,
            "recurrent_kind": content.get("recurrent_kind"),
            "gates": gates, "stats": names,
            "rows": plugin_recurrent.gate_rows(content),
            "epochs": epochs, "values": values,
        }

    def gate_heatmap_impl(self, ctx, experiment, run, source, variable,
                          epoch=None):
        """Pooled mean |g| of each gate of one fused recurrent weight.

        Args:
          epoch: An epoch number, or ``None`` for the latest one.
        """
        tag = metadata.gate_heatmap_tag(source, variable)
        content = self._contents(ctx, experiment, run, [tag]).get(tag)
        if content is None or content["kind"] != metadata.KIND_GATE_HEATMAP:
            raise errors.NotFoundError(
                "No gate heatmap of variable %r for run %r and source %r"
                % (variable, run, source))
        data = self._read(ctx, experiment, runs=[run], tags=[tag])
        by_epoch = plugin_series.by_step(data.get(run, {}).get(tag, []))
        epochs = sorted(by_epoch)
        if not epochs:
            raise errors.NotFoundError(
                "No gate heatmap of variable %r for run %r and source %r"
                % (variable, run, source))
        if epoch is None:
            epoch = epochs[-1]
        if epoch not in by_epoch:
            raise errors.NotFoundError(
                "No gate heatmap of variable %r at epoch %r for run %r and "
                "source %r" % (variable, epoch, run, source))
        gates, _ = plugin_recurrent.gate_columns(content)
        planes = {e: plugin_recurrent.gate_planes(d.numpy, len(gates))
                  for e, d in by_epoch.items()}
        tensor = planes[epoch]
        return {
            "run": run, "source": source, "variable": variable,
            "layer": content.get("layer"),
            "recurrent_kind": content.get("recurrent_kind"),
            "gates": gates, "block": content.get("block"),
            "rows": int(tensor.shape[1]), "cols": int(tensor.shape[2]),
            "epoch": epoch, "epochs": epochs,
            "values": json_values.float32_json(
                tensor.reshape(tensor.shape[0], -1)),
            "scale": plugin_recurrent.gate_heatmap_scale(planes.values()),
        }

    def findings_impl(self, ctx, experiment, run):
        """The findings of one run (`plugin.findings`), kept while the run's
        series are unchanged."""
        listing = self._list(ctx, experiment, runs=[run]).get(run, {})
        parsed = plugin_listing.parse_listing(listing)
        if not parsed:
            raise errors.NotFoundError("No gradient data for run %r" % run)
        key = ("findings", experiment, run,
               plugin_cache.series_signature(listing, parsed))
        found = self._cache.get_or_build(
            key, lambda: plugin_findings.findings_body(
                self._source_series(ctx, experiment, run, listing, parsed)))
        return {"run": run, "findings": found}

    def _source_series(self, ctx, experiment, run, listing, parsed_run):
        """``{source: series.SourceSeries}`` of the run's sources with
        statistics, from the cached statistics table.

        Args:
          listing, parsed_run: the run's listing and `parse_listing` of it.
        """
        by_source = {}
        for source in metadata.SOURCES:
            parsed = plugin_listing.of_source(parsed_run, source)
            entries = plugin_listing.variable_entries(parsed, source)
            if not entries:
                continue
            signature = plugin_cache.series_signature(listing, parsed)
            table = self._stats_table(ctx, experiment, run, source, entries,
                                      parsed, signature)
            scalars = self._data_provider.read_scalars(
                ctx, experiment_id=experiment, plugin_name=_SCALARS_PLUGIN,
                downsample=_DOWNSAMPLE, run_tag_filter=provider.RunTagFilter(
                    runs=[run], tags=[metadata.scalar_tag(source, name)
                                      for name in metadata.GLOBAL_STAT_NAMES]))
            steps_tag = metadata.steps_tag(source)
            step_datums = []
            if steps_tag in parsed:
                step_datums = self._read(ctx, experiment, runs=[run],
                                         tags=[steps_tag]).get(run, {}).get(
                                             steps_tag, [])
            by_source[source] = plugin_findings.source_series(
                source, plugin_series.run_window(parsed), table,
                scalars.get(run, {}), step_datums)
        return by_source

    # -- routes --------------------------------------------------------------

    @wrappers.Request.application
    @_guarded
    def runs_route(self, request):
        ctx, experiment = _context(request)
        return _json_response(request, self.runs_impl(ctx, experiment))

    @wrappers.Request.application
    @_guarded
    def variables_route(self, request):
        ctx, experiment = _context(request)
        body = self.variables_impl(ctx, experiment, _required(request, "run"),
                                   _source(request))
        return _json_response(request, body)

    @wrappers.Request.application
    @_guarded
    def scalars_route(self, request):
        ctx, experiment = _context(request)
        body = self.scalars_impl(ctx, experiment, _required(request, "run"),
                                 _source(request), _points(request),
                                 *_step_range(request))
        return _json_response(request, body)

    @wrappers.Request.application
    @_guarded
    def findings_route(self, request):
        ctx, experiment = _context(request)
        return _json_response(request, self.findings_impl(
            ctx, experiment, _required(request, "run")))

    @wrappers.Request.application
    @_guarded
    def variable_stats_route(self, request):
        ctx, experiment = _context(request)
        body = self.variable_stats_impl(
            ctx, experiment, _required(request, "run"), _source(request),
            _filter(request), _stats(request), _points(request),
            *_step_range(request))
        return _json_response(request, body)

    @wrappers.Request.application
    @_guarded
    def steps_route(self, request):
        ctx, experiment = _context(request)
        body = self.steps_impl(ctx, experiment, _required(request, "run"),
                               _source(request))
        return _json_response(request, body)

    @wrappers.Request.application
    @_guarded
    def heatmap_route(self, request):
        ctx, experiment = _context(request)
        body = self.heatmap_impl(
            ctx, experiment, _required(request, "run"), _source(request),
            _required(request, "variable"), _epoch(request))
        return _json_response(request, body)

    @wrappers.Request.application
    @_guarded
    def timestep_layers_route(self, request):
        ctx, experiment = _context(request)
        body = self.timestep_layers_impl(ctx, experiment,
                                         _required(request, "run"))
        return _json_response(request, body)

    @wrappers.Request.application
    @_guarded
    def timesteps_route(self, request):
        ctx, experiment = _context(request)
        body = self.timesteps_impl(
            ctx, experiment, _required(request, "run"),
            _required(request, "layer"), _epoch(request))
        return _json_response(request, body)

    @wrappers.Request.application
    @_guarded
    def gates_route(self, request):
        ctx, experiment = _context(request)
        body = self.gates_impl(ctx, experiment, _required(request, "run"),
                               _source(request), _required(request, "layer"))
        return _json_response(request, body)

    @wrappers.Request.application
    @_guarded
    def gate_heatmap_route(self, request):
        ctx, experiment = _context(request)
        body = self.gate_heatmap_impl(
            ctx, experiment, _required(request, "run"), _source(request),
            _required(request, "variable"), _epoch(request))
        return _json_response(request, body)

    @wrappers.Request.application
    def _asset_route(self, name, request):
        """One static file of the frontend, read when asked for.

        Reading per request lets the frontend be edited without restarting
        TensorBoard; the name was fixed when the plugin was loaded.
        """
        try:
            with open(os.path.join(self._assets_dir, name), "rb") as f:
                content = f.read()
        except OSError:
            raise errors.NotFoundError("No static asset %r" % (name,))
        return http_util.Respond(request, content, self._assets[name])
