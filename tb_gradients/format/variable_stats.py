"""The ``variable_stats`` kind: one float64 vector per variable and window,
its columns named by ``VARIABLE_STAT_NAMES`` (docs/STATISTICS.md). Written
here, and read back here: a vector's columns as its metadata names them,
rearranged into today's columns. The plugin and the offline reader decode
with these."""

import numpy as np

from tb_gradients.format import decoding
from tb_gradients.format import metadata

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
    return list(VARIABLE_STAT_NAMES)


def decode(content, value):
    """One stored statistics vector, checked against its content: a float
    vector of one value per column of `stat_columns`, as float64.

    Raises:
      decoding.ReadError: for any other shape or dtype.
    """
    columns = stat_columns(content)
    return decoding.checked(
        value, f"a float vector of {len(columns)} statistics", ndim=1,
        shape=(len(columns),)).astype(np.float64, copy=False)


def by_stat_names(raw, columns):
    """``(n, len(columns))`` statistics vectors as ``(n, stats)`` with the
    columns of ``VARIABLE_STAT_NAMES`` (NaN where ``columns`` lacks one)."""
    matrix = np.full((len(raw), len(VARIABLE_STAT_NAMES)), np.nan)
    for position, name in enumerate(VARIABLE_STAT_NAMES):
        if name in columns:
            matrix[:, position] = raw[:, columns.index(name)]
    return matrix


def write_variable_stats(batch, source, variable, stat_values):
    """One variable's statistics vector (float64, ``VARIABLE_STAT_NAMES``).

    Args:
      variable: dict with ``name``, ``layer``, ``index``, ``shape``.
      stat_values: the vector, a row of
        `window.statistics.statistics_matrix`.
    """
    summary_metadata = metadata.plugin_metadata(
        metadata.KIND_VARIABLE_STATS, source, window=batch.window,
        description=f"Gradient statistics of {variable['name']}",
        variable=variable["name"], layer=variable["layer"],
        index=variable["index"], shape=list(variable["shape"]),
        stats=list(VARIABLE_STAT_NAMES))
    batch.tensor(metadata.variable_stats_tag(source, variable["name"]),
                 np.asarray(stat_values, dtype=np.float64), summary_metadata)
