"""The "Gradients" TensorBoard plugin: HTTP routes over the data provider.

Modelled on TensorBoard's plugins: each route is a thin ``*_route`` that
reads its parameters and hands them to its family's handler (`listing`,
`stats`, `heatmaps`, `recurrent`, `findings`, `gradient_map`, as the HParams plugin does
with ``list_metric_evals.Handler``), which reads through
``context.data_provider`` only (`reading`: so it works with the Python
loader and with the Rust data server of ``--load_fast=true``) and raises
``tensorboard.errors`` for bad requests. docs/API.md documents every route.
"""

import functools
import os
import re

from tensorboard import errors
from tensorboard import plugin_util
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from tensorboard.util import tb_logging
from werkzeug import wrappers

from tb_gradients import json_values
from tb_gradients.format import decoding
from tb_gradients.format import metadata
from tb_gradients.format import variable_stats as variable_stats_format
from tb_gradients.plugin import assets as plugin_assets
from tb_gradients.plugin import findings as plugin_findings
from tb_gradients.plugin import gradient_map as plugin_gradient_map
from tb_gradients.plugin import heatmaps as plugin_heatmaps
from tb_gradients.plugin import listing as plugin_listing
from tb_gradients.plugin import params as plugin_params
from tb_gradients.plugin import reading
from tb_gradients.plugin import recurrent as plugin_recurrent
from tb_gradients.plugin import stats as plugin_stats

logger = tb_logging.get_logger()

FRONTEND_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "frontend")

# Fixed at import: a request can only name one of these files.
ASSETS = plugin_assets.asset_map(FRONTEND_DIR)


# What `_guarded` logs and answers. Both are fixed texts so that a log or
# a test can tell the last line of defence from the typed errors the routes
# raise on purpose: on intact data the guard is never meant to answer.
GUARD_WARNING = "Gradients plugin could not read data for %r"
GUARD_NOT_FOUND = "No readable gradient data for this request"
def _guarded(route, data):
    """Makes a route answer 4xx, never 500, on data it cannot parse.

    Parameter errors are raised as `errors.InvalidArgumentError` and absent
    data as `errors.NotFoundError` by the routes themselves. Data that does
    not match its kind's layout raises `format.decoding.ReadError`, which
    names the run, tag and step: it is answered 404 with that message and
    logged once per run and reason (`reading.PluginData.report`).
    Anything else that escapes is
    answered as data not found, and logged with its traceback, once per
    route and error, for whoever runs the server.
    """

    @functools.wraps(route)
    def wrapper(request):
        try:
            return route(request)
        except errors.PublicError:
            raise
        except decoding.ReadError as error:
            error = error.located(run=request.args.get("run"))
            data.report([error])
            raise errors.NotFoundError(str(error))
        except Exception as error:  # the data, not the request, is at fault
            if data.logged.first(("guard", request.path,
                                  type(error).__name__, str(error))):
                logger.warning(GUARD_WARNING, request.full_path,
                               exc_info=True)
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


def _step(request):
    try:
        return plugin_params.parse_step(
            {name: request.args.get(name)
             for name in plugin_params.STEP_PARAMETERS})
    except ValueError as error:
        raise errors.InvalidArgumentError(str(error))


def _stats(request):
    text = request.args.get("stats")
    try:
        return plugin_params.parse_stat_names(text)
    except ValueError as error:
        raise errors.InvalidArgumentError(
            "Parameter 'stats' must be a comma-separated list of names of %r "
            "(%s). Received: stats=%r"
            % (variable_stats_format.VARIABLE_STAT_NAMES, error, text))


def _filter(request):
    text = request.args.get("filter")
    try:
        return plugin_params.compile_filter(text)
    except (re.error, RecursionError, OverflowError) as error:
        raise errors.InvalidArgumentError(
            "Parameter 'filter' is not a valid regular expression (%s). "
            "Received: filter=%r" % (error, text))


def _map_stat(request):
    text = request.args.get("stat")
    try:
        return plugin_gradient_map.parse_map_stat(text)
    except ValueError as error:
        raise errors.InvalidArgumentError(
            "Parameter 'stat' %s. Received: stat=%r" % (error, text))


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


def _run(request):
    return _required(request, "run")


def _layer(request):
    return _required(request, "layer")


def _variable(request):
    return _required(request, "variable")


def _data_route(body, readers, data):
    """A JSON route: reads its parameters with ``readers``, in order (each
    gives one value, `_step_range` two), and answers ``body(ctx,
    experiment, *values)``; a failure the body did not raise on purpose
    is answered by `_guarded` (which logs through ``data``, the
    `reading.PluginData`)."""

    @wrappers.Request.application
    @functools.partial(_guarded, data=data)
    def route(request):
        ctx, experiment = _context(request)
        values = []
        for read in readers:
            value = read(request)
            values.extend(value if read is _step_range else [value])
        return _json_response(request, body(ctx, experiment, *values))

    return route


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
        self._data = reading.PluginData(context.data_provider)
        # one handler per route family, all reading through `self._data`
        self._listing = plugin_listing.Handler(self._data)
        self._stats = plugin_stats.Handler(self._data)
        self._heatmaps = plugin_heatmaps.Handler(self._data)
        self._recurrent = plugin_recurrent.Handler(self._data)
        self._findings = plugin_findings.Handler(self._data)
        self._gradient_map = plugin_gradient_map.Handler(self._data)
        if assets_dir is None:
            self._assets_dir, self._assets = FRONTEND_DIR, dict(ASSETS)
        else:
            self._assets_dir = assets_dir
            self._assets = plugin_assets.asset_map(assets_dir)

    def clear_caches(self):
        """Forgets every cached body, table and series (benchmarks of the
        cold path)."""
        self._data.clear_caches()

    def get_plugin_apps(self):
        # each data route: its handler's method and the parameters it
        # takes after ``(ctx, experiment)``, in order (docs/API.md)
        routes = {
            "/runs": (self._listing.runs, ()),
            "/variables": (self._listing.variables, (_run, _source)),
            "/scalars": (self._stats.scalars,
                         (_run, _source, _points, _step_range)),
            "/variable_stats": (self._stats.variable_stats,
                                (_run, _source, _filter, _stats, _points,
                                 _step_range)),
            "/steps": (self._stats.steps, (_run, _source)),
            "/heatmap": (self._heatmaps.heatmap,
                         (_run, _source, _variable, _step)),
            "/timestep_layers": (self._recurrent.timestep_layers, (_run,)),
            "/timesteps": (self._recurrent.timesteps,
                           (_run, _layer, _step)),
            "/gates": (self._recurrent.gates, (_run, _source, _layer)),
            "/gate_heatmap": (self._recurrent.gate_heatmap,
                              (_run, _source, _variable, _step)),
            "/findings": (self._findings.findings, (_run,)),
            "/gradient_map": (self._gradient_map.gradient_map,
                              (_run, _source, _map_stat)),
        }
        apps = {path: _data_route(body, readers, self._data)
                for path, (body, readers) in routes.items()}
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
