"""Which series a run has: their parsed contents, sources and variables.

The plugin's view of a data provider's listing: each series' metadata
content parsed (`parse_listing`), the sources that have statistics, and the
variables each source describes, in the model's order. The functions take
the plain values a data provider returns, so each one can be tested on
hand-made input; `Handler` serves ``/runs`` and ``/variables`` with them.
"""

import numpy as np

from tb_gradients.analysis import structure
from tb_gradients.format import decoding
from tb_gradients.format import metadata
from tb_gradients.plugin import cache as plugin_cache
from tb_gradients.plugin import handler
from tb_gradients.plugin import series as plugin_series


def read_listing(run, tag_to_series):
    """Parsed content of every series of one run, and what was skipped.

    Args:
      run: the run's name (for the errors).
      tag_to_series: ``{tag: TensorTimeSeries}`` as `list_tensors` returns
        for one run.

    Returns:
      ``(parsed, unreadable)``: ``{tag: content dict}`` of the series this
      version reads, and a `format.decoding.ReadError` for each one whose
      content `metadata.read_plugin_metadata` rejects (a newer format
      version, content that is not JSON, an unknown kind).
    """
    parsed, unreadable = {}, []
    for tag, series in tag_to_series.items():
        try:
            parsed[tag] = metadata.read_plugin_metadata(series.plugin_content)
        except decoding.ReadError as error:
            unreadable.append(error.located(run=run, tag=tag))
    return parsed, unreadable


def parse_listing(tag_to_series):
    """``{tag: content dict}`` of the readable series of one run
    (`read_listing` without what it skipped)."""
    return read_listing(None, tag_to_series)[0]


def of_source(parsed, source):
    """The series of ``parsed`` (`parse_listing`) that belong to
    ``source``."""
    return {tag: content for tag, content in parsed.items()
            if content["source"] == source}


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


class Handler(handler.Handler):
    """A run listing: the runs with gradient data and one run's variables."""

    def runs(self, ctx, experiment):
        """Runs with gradient data: sources, window and logged epoch counts.

        The epoch count of a source is the number of distinct steps of its
        first variable's statistics series, which the writer logs at every
        logged epoch or window (a step recorded twice, by a restarted run,
        counts once). Counting needs a read; its result is kept while those
        series' last step and wall time (from the listing) are unchanged.
        The ``window`` (`plugin.series.run_window`) comes from the series'
        metadata. A run whose series this version cannot read (a newer
        format, metadata that is not JSON, an unknown kind) is listed with
        its ``errors``, even when nothing of it is readable.
        """
        listing = self._data.list(ctx, experiment)
        firsts = {}
        runs = []
        for run in sorted(listing):
            parsed, unreadable = read_listing(run, listing[run])
            sources = sources_present(parsed)
            if not sources and not unreadable:
                continue
            self._data.report(unreadable)
            runs.append({"run": run, "sources": sources,
                         "window": plugin_series.run_window(parsed),
                         "errors": decoding.errors_json(unreadable)})
            for source in sources:
                entries = variable_entries(parsed, source)
                if entries:
                    firsts[(run, source)] = entries[0]["tag"]
        signature = tuple(
            (run, plugin_cache.series_signature(listing[run], [tag]))
            for (run, _), tag in sorted(firsts.items()))
        counts = self._data.cache.get_or_build(
            ("runs", experiment, signature),
            lambda: self._epoch_counts(ctx, experiment, firsts))
        for entry in runs:
            entry["epochs"] = max((counts.get((entry["run"], source), 0)
                                   for source in entry["sources"]),
                                  default=0)
        return {"runs": runs}

    def _epoch_counts(self, ctx, experiment, firsts):
        """``{(run, source): samples of the tag firsts[(run, source)]}``."""
        if not firsts:
            return {}
        data = self._data.read(ctx, experiment,
                          runs=sorted({run for run, _ in firsts}),
                          tags=sorted(set(firsts.values())))
        return {key: len(plugin_series.steps_of(
                    data.get(key[0], {}).get(tag, ())))
                for key, tag in firsts.items()}

    def variables(self, ctx, experiment, run, source):
        """The variables of one run and source, in model order, each with
        its depth and role in the model's repeated blocks
        (`analysis.structure`; ``None`` when the names repeat nothing)."""
        entries, _, _ = self._data.variables(ctx, experiment, run, source)
        places = structure.block_structure([e["name"] for e in entries])
        return {
            "run": run,
            "source": source,
            "structure": places is not None,
            "variables": [
                {key: entry[key] for key in
                 ("name", "layer", "index", "shape", "size", "heatmap")}
                | {"depth": places[i].depth if places else None,
                   "role": places[i].role if places else None}
                for i, entry in enumerate(entries)
            ],
        }
