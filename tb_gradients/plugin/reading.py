"""What every route handler reads through: the data provider, the caches of
bodies, tables and series, and the checks every route makes the same way.

Routes read through ``context.data_provider`` only, so they work with the
Python loader and with the Rust data server of ``--load_fast=true``; each
handler (`listing`, `stats`, `heatmaps`, `recurrent`, `findings`) holds
one `PluginData` shared by all of them.
"""

import threading

from tensorboard import errors
from tensorboard.data import provider
from tensorboard.util import tb_logging

from tb_gradients.format import decoding
from tb_gradients.format import metadata
from tb_gradients.plugin import cache as plugin_cache
from tb_gradients.plugin import listing as plugin_listing
from tb_gradients.plugin import stats as plugin_stats

# Our series are small and few per window: read every stored sample. (How
# many are stored is set by `GradientsLoader.fix_flags`.)
DOWNSAMPLE = 10**9

SCALARS_PLUGIN = "scalars"

# What is logged, once, of a `format.decoding.ReadError` (damaged or
# foreign data, named by run, tag and step).
READ_ERROR_WARNING = "Gradients plugin: unreadable data: %s"

logger = tb_logging.get_logger()


class LogOnce:
    """Remembers what was logged, so that each damaged thing is logged
    once per server, not once per request that meets it."""

    def __init__(self):
        self._seen = set()
        self._lock = threading.Lock()

    def first(self, key):
        """Whether ``key`` is new (and from now on, known)."""
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            return True


class PluginData:
    """The data provider, with the plugin's caches.

    Args:
      data_provider: the `TBContext`'s data provider.
    """

    def __init__(self, data_provider):
        self.provider = data_provider
        self.cache = plugin_cache.BodyCache()
        # `plugin.stats.StatsTable`s, large (variables x windows x 19): few.
        self.tables = plugin_cache.BodyCache(max_entries=4)
        # Heatmap series of single variables (`heatmaps.Handler`).
        self.series_cache = plugin_cache.BodyCache(max_entries=64)
        self._known_contents = {}
        self._contents_lock = threading.Lock()
        self.logged = LogOnce()

    def report(self, unreadable):
        """Logs `format.decoding.ReadError`s, each reason of a run once
        (the first tag named, with how many more share it: a run from a
        newer version is one line, not one per series)."""
        for error, more in decoding.grouped(unreadable):
            if self.logged.first(("read", error.run, error.reason)):
                logger.warning(READ_ERROR_WARNING, str(error) + (
                    " (and %d more series or steps for the same reason)"
                    % more if more else ""))

    def clear_caches(self):
        for cache in (self.cache, self.tables, self.series_cache):
            cache.clear()

    def list(self, ctx, experiment, runs=None, tags=None):
        return self.provider.list_tensors(
            ctx, experiment_id=experiment, plugin_name=metadata.PLUGIN_NAME,
            run_tag_filter=provider.RunTagFilter(runs=runs, tags=tags))

    def read(self, ctx, experiment, runs, tags):
        return self.provider.read_tensors(
            ctx, experiment_id=experiment, plugin_name=metadata.PLUGIN_NAME,
            downsample=DOWNSAMPLE,
            run_tag_filter=provider.RunTagFilter(runs=runs, tags=tags))

    def read_isolating(self, ctx, experiment, run, tags):
        """``(data, unreadable)``: every sample of ``tags`` of one run, read
        at once; when the data provider cannot decode them (a tensor whose
        bytes do not match its shape), read one tag at a time so that only
        the damaged tags are left out, each with a
        `format.decoding.ReadError`."""
        if not tags:
            return {}, []
        try:
            return self.read(ctx, experiment, [run], tags).get(run, {}), []
        except errors.PublicError:
            raise
        except Exception:  # a tensor the provider cannot decode
            pass
        data, unreadable = {}, []
        for tag in tags:
            try:
                data.update(self.read(ctx, experiment, [run], [tag]).get(
                    run, {}))
            except errors.PublicError:
                raise
            except Exception as error:
                unreadable.append(decoding.ReadError(
                    "TensorBoard cannot decode its tensors (%s: %s)"
                    % (type(error).__name__, error), run=run, tag=tag))
        return data, unreadable

    def contents(self, ctx, experiment, run, tags):
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
        listing = self.list(ctx, experiment, runs=[run], tags=tags)
        parsed = plugin_listing.parse_listing(listing.get(run, {}))
        with self._contents_lock:
            for tag, content in parsed.items():
                self._known_contents[(experiment, run, tag)] = content
        return parsed

    def run_listing(self, ctx, experiment, run, source):
        """One run's series of ``source``; 404 if none.

        Returns:
          ``(parsed, signature)``: ``{tag: parsed content}`` and
          `plugin.cache.series_signature` of those tags.
        """
        listing = self.list(ctx, experiment, runs=[run]).get(run, {})
        parsed = plugin_listing.parse_listing(listing)
        parsed = plugin_listing.of_source(parsed, source)
        if not parsed:
            raise errors.NotFoundError(
                "No gradient data for run %r and source %r" % (run, source))
        return parsed, plugin_cache.series_signature(listing, parsed)

    def variables(self, ctx, experiment, run, source):
        """``(variable entries, parsed, signature)`` of a run; 404 if none."""
        parsed, signature = self.run_listing(ctx, experiment, run, source)
        entries = plugin_listing.variable_entries(parsed, source)
        if not entries:
            raise errors.NotFoundError(
                "No variable statistics for run %r and source %r"
                % (run, source))
        return entries, parsed, signature

    def stats_table(self, ctx, experiment, run, source, entries, parsed,
                    signature):
        """The `plugin.stats.StatsTable` of a run and source (`variables`'
        output), kept while the series are unchanged: one read of all
        their series (one data-provider call for the run's tags), shared
        by `/variable_stats` and `/findings`."""

        def build():
            data, unreadable = self.read_isolating(
                ctx, experiment, run, [e["tag"] for e in entries])
            table = plugin_stats.StatsTable(entries, [
                plugin_stats.stat_matrix(data.get(entry["tag"], []),
                                         parsed[entry["tag"]])
                for entry in entries])
            table.unreadable[:0] = unreadable
            self.report([error.located(run=run)
                         for error in table.unreadable])
            return table

        return self.tables.get_or_build(
            ("table", experiment, run, source, signature), build)

    def list_scalars(self, ctx, experiment, run, tags):
        """The listing of some global scalars of one run."""
        return self.provider.list_scalars(
            ctx, experiment_id=experiment, plugin_name=SCALARS_PLUGIN,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=tags)).get(
                run, {})

    def read_scalars(self, ctx, experiment, run, tags):
        """Every sample of some global scalars of one run."""
        return self.provider.read_scalars(
            ctx, experiment_id=experiment, plugin_name=SCALARS_PLUGIN,
            downsample=DOWNSAMPLE,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=tags)).get(
                run, {})

    def content_of_kind(self, ctx, experiment, run, tag, kind, missing):
        """The parsed metadata of ``tag`` (`contents`), of ``kind``."""
        return of_kind(self.contents(ctx, experiment, run, [tag]).get(tag),
                       kind, missing)

    def series_of_kind(self, ctx, experiment, run, tag, kind, missing):
        """``(content, datums)``: `content_of_kind` and every sample of
        ``tag``."""
        content = self.content_of_kind(ctx, experiment, run, tag, kind,
                                       missing)
        data = self.read(ctx, experiment, runs=[run], tags=[tag])
        return content, data.get(run, {}).get(tag, [])


def of_kind(content, kind, missing):
    """``content`` when it is the metadata of a series of ``kind``; else 404
    with the message ``missing``."""
    if content is None or content["kind"] != kind:
        raise errors.NotFoundError(missing)
    return content


def at_step(by_step, requested, subject, where):
    """``(step, steps)``: the step of ``by_step`` to serve (the one
    ``requested``, a `plugin.params.RequestedStep`, or the latest when None)
    and every step recorded; 404 "No <subject> <where>" when there is none,
    and "No <subject> at <parameter> <step> <where>" when there is none at
    the requested step (named as it was asked for: ``step`` or
    ``epoch``)."""
    steps = sorted(by_step)
    if not steps:
        raise errors.NotFoundError("No %s %s" % (subject, where))
    if requested is None:
        return steps[-1], steps
    if requested.value not in by_step:
        raise errors.NotFoundError("No %s at %s %r %s" % (
            subject, requested.parameter, requested.value, where))
    return requested.value, steps

