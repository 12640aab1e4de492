"""The whole-model statistics of a window as plain scalars,
``gradients/<source>/<name>``, for TensorBoard's Scalars tab (and the
reader's and findings' global series)."""

import numpy as np

from tb_gradients.format import decoding
from tb_gradients.format import metadata

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


def write_global_scalars(batch, source, global_stats):
    """``gradients/<source>/<name>`` scalars; NaN for a statistic missing
    from ``global_stats``, none for the probe's training-only ones."""
    for name in GLOBAL_STAT_NAMES:
        if source != "training" and name in TRAINING_ONLY_STATS:
            continue
        value = global_stats.get(name, float("nan"))
        batch.scalar(metadata.scalar_tag(source, name), value)


def decode_scalar(value):
    """One stored global statistic as a float.

    Raises:
      decoding.ReadError: when it is not a float scalar.
    """
    return float(decoding.checked(value, "a float scalar", ndim=0))
