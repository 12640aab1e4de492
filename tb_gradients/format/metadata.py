"""What every summary kind of docs/FORMAT.md shares: the plugin's name, the
format version, the kinds and sources, the tag layout, and the versioned
plugin metadata (built here, parsed here).

What belongs to one kind (its columns, channels, encoding and the function
that writes it) lives in that kind's module beside this one.
"""

import functools
import json

from tensorboard.compat.proto import summary_pb2

from tb_gradients.format import decoding

PLUGIN_NAME = "gradients"

# Bumped whenever a tag, shape, dtype or JSON field changes meaning.
FORMAT_VERSION = 2

SOURCES = ("training", "probe")

# Kinds of plugin tensors (the "kind" field of the JSON content).
KIND_VARIABLE_STATS = "variable_stats"
KIND_HEATMAP = "heatmap"
KIND_STEPS = "steps"
KIND_TIMESTEPS = "timesteps"
KIND_TIMESTEP_NORMS = "timestep_norms"
KIND_GATES = "gates"
KIND_GATE_HEATMAP = "gate_heatmap"
KINDS = (KIND_VARIABLE_STATS, KIND_HEATMAP, KIND_STEPS, KIND_TIMESTEPS,
         KIND_TIMESTEP_NORMS, KIND_GATES, KIND_GATE_HEATMAP)


def scalar_tag(source, name):
    return f"gradients/{source}/{name}"


def variable_stats_tag(source, variable):
    return f"gradients/{source}/variable/{variable}"


def heatmap_tag(source, variable):
    return f"gradients/{source}/heatmap/{variable}"


def histogram_tag(source, variable):
    return f"gradients/{source}/histogram/{variable}"


def steps_tag(source):
    return f"gradients/{source}/per_step"


def timesteps_tag(source, layer):
    return f"gradients/{source}/timesteps/{layer}"


def timestep_norms_tag(source, layer):
    return f"gradients/{source}/timestep_norms/{layer}"


def gates_tag(source, layer):
    return f"gradients/{source}/gates/{layer}"


def gate_heatmap_tag(source, variable):
    return f"gradients/{source}/gate_heatmap/{variable}"



def create_summary_metadata(kind, source, description="", **fields):
    """Creates the `SummaryMetadata` of one plugin tensor series.

    Args:
      kind: One of the ``KIND_*`` constants.
      source: ``"training"`` or ``"probe"``.
      description: Human-readable text shown by TensorBoard.
      **fields: Further JSON-serialisable fields of the content.

    Returns:
      A `summary_pb2.SummaryMetadata` with ``data_class=DATA_CLASS_TENSOR``.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown summary kind: {kind!r}")
    if source not in SOURCES:
        raise ValueError(f"Unknown gradient source: {source!r}")
    content = {"version": FORMAT_VERSION, "kind": kind, "source": source}
    content.update(fields)
    return summary_pb2.SummaryMetadata(
        summary_description=description,
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME,
            content=json.dumps(content, sort_keys=True).encode("utf-8"),
        ),
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    )


def read_plugin_metadata(content):
    """Parses the plugin content of a summary written by this package.

    Args:
      content: The ``plugin_data.content`` bytes.

    Returns:
      The content as a dict.

    Raises:
      decoding.ReadError: naming why a reader must skip the series: a
        newer format version (with what to do about it), content that is
        not a JSON object, an unknown kind or source.
    """
    if not isinstance(content, (bytes, bytearray)):
        raise decoding.ReadError(
            f"metadata is not bytes but {type(content).__name__}")
    try:
        parsed = json.loads(bytes(content).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise decoding.ReadError(
            f"metadata is not JSON: {_preview(content)}") from None
    if not isinstance(parsed, dict):
        raise decoding.ReadError(
            f"metadata is not a JSON object: {_preview(content)}")
    version = parsed.get("version")
    if isinstance(version, bool) or not isinstance(version, int) \
            or version < 1:
        raise decoding.ReadError(
            f"metadata has no valid format version: version={version!r}")
    if version > FORMAT_VERSION:
        raise decoding.ReadError(newer_version_reason(version))
    if parsed.get("kind") not in KINDS:
        raise decoding.ReadError(
            f"unknown kind {parsed.get('kind')!r} (this version reads "
            f"{', '.join(KINDS)})")
    if parsed.get("source") not in SOURCES:
        raise decoding.ReadError(
            f"unknown source {parsed.get('source')!r} (this version reads "
            f"{', '.join(SOURCES)})")
    return parsed


def newer_version_reason(version):
    """What a reader says of a series from a newer format version."""
    return (f"written by format version {version}; this version reads up "
            f"to {FORMAT_VERSION}: upgrade tb-gradients")


def _preview(content, limit=40):
    text = bytes(content)[:limit].decode("utf-8", errors="replace")
    return repr(text + ("…" if len(content) > limit else ""))


def parse_plugin_metadata(content):
    """`read_plugin_metadata`, or ``None`` for content it rejects (for
    readers that only need what they can read)."""
    try:
        return read_plugin_metadata(content)
    except decoding.ReadError:
        return None


def plugin_metadata(kind, source, description="", **fields):
    """`create_summary_metadata` of one series, to be built when needed:
    a function of no arguments for `writer.WindowBatch.tensor`, which
    builds it with the series' first value in each event file only."""
    return functools.partial(create_summary_metadata, kind, source,
                             description, **fields)
