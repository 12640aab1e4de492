"""Which series a run has: their parsed contents, sources and variables.

The plugin's view of a data provider's listing: each series' metadata
content parsed (`parse_listing`), the sources that have statistics, and the
variables each source describes, in the model's order. Nothing here talks
to a data provider: the functions take the plain values it returns, so each
one can be tested on hand-made input.
"""

import numpy as np

from tb_gradients.format import metadata
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
