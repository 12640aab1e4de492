"""Names and versioned metadata of the summaries this package writes.

Everything that both the writer (``writer.py``) and the reader
(``plugin.py``) must agree on lives here, so that the contract described in
docs/FORMAT.md has exactly one implementation.
"""

import json

from tensorboard.compat.proto import summary_pb2

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

# Columns of the per-variable statistics vector, in order. The definitions
# are in docs/STATISTICS.md; ``window.kernels.tensorflow`` computes them.
VARIABLE_STAT_NAMES = (
    "size",
    "steps",
    "norm",
    "norm_accumulated",
    "accumulated_norm",
    "dissolving_norm",
    "l2",
    "l2_accumulated",
    "mean",
    "std",
    "mean_abs",
    "max_abs",
    "max_abs_index",
    "accumulated_max_abs",
    "dissolving_max",
    "nan_count",
    "inf_count",
    "within_epoch_dissolving_norm",
    "noise_scale",
    "dead_units",
    "weight_l2",
    "first_nonfinite_step",
)

# The callback's findings (docs/FINDINGS.md), a Markdown table for
# TensorBoard's Text tab.
FINDINGS_TAG = "gradients/findings"

# Global scalars written as ``gradients/<source>/<name>`` (Scalars tab).
GLOBAL_STAT_NAMES = (
    "norm",
    "norm_accumulated",
    "accumulated_norm",
    "dissolving_norm",
    "l2",
    "l2_accumulated",
    "max_abs",
    "nan_count",
    "inf_count",
    "within_epoch_dissolving_norm",
    "noise_scale",
    "steps",
    "skipped_steps",
    "step_l2_max",
    "step_max_abs_max",
)

# Global statistics that only the training source defines.
TRAINING_ONLY_STATS = (
    "within_epoch_dissolving_norm",
    "noise_scale",
    "skipped_steps",
    "step_l2_max",
    "step_max_abs_max",
)

# Channels of a heatmap tensor, in order, and which statistic of the same
# variable and epoch is the scale of each channel's uint8 encoding.
HEATMAP_CHANNELS = (
    "gradient_mean_abs",
    "gradient_max_abs",
    "accumulated_mean_abs",
    "dissolving_mean",
)
HEATMAP_CHANNEL_SCALES = (
    "max_abs",
    "max_abs",
    "accumulated_max_abs",
    "dissolving_max",
)

# Columns of the per-step tensor (training source).
STEP_COLUMNS = ("l2", "max_abs")

# uint8 heatmap encoding: 0 = zero (or below the range), 1..253 = log-spaced
# values over HEATMAP_DECADES decades below the channel scale, 254 = +Inf,
# 255 = NaN.
HEATMAP_ENCODINGS = ("uint8", "float32")
HEATMAP_DECADES = 6.0
HEATMAP_CODE_LEVELS = 253  # codes 1..253
HEATMAP_CODE_INF = 254
HEATMAP_CODE_NAN = 255


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


# Columns of the timestep-norm tensor (axis 0).
TIMESTEP_NORM_CHANNELS = ("l2", "valid")
# Columns of the per-gate statistics (last axis of the gates tensor).
GATE_STAT_NAMES = ("l2", "mean_abs", "max_abs")
# Gate order of Keras's fused recurrent weights (last axis), per kind.
GATES = {
    "LSTM": ("input", "forget", "cell", "output"),
    "GRU": ("update", "reset", "candidate"),
}
GATE_WEIGHT_ROLES = ("kernel", "recurrent_kernel", "bias")


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


def parse_plugin_metadata(content):
    """Parses the plugin content of a summary written by this package.

    Args:
      content: The ``plugin_data.content`` bytes.

    Returns:
      The content as a dict, or ``None`` when it is not a version this code
      understands (newer writers, corrupt data): readers skip such series
      rather than fail.
    """
    if not isinstance(content, (bytes, bytearray)):
        return None
    try:
        parsed = json.loads(bytes(content).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(parsed, dict):
        return None
    version = parsed.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        return None
    if parsed.get("kind") not in KINDS:
        return None
    if parsed.get("source") not in SOURCES:
        return None
    return parsed
