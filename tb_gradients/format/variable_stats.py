"""The ``variable_stats`` kind read back: a statistics vector's columns, as
its metadata names them, and vectors rearranged into the columns of
``metadata.VARIABLE_STAT_NAMES``. The plugin and the offline reader decode
with these."""

import numpy as np

from tb_gradients.format import metadata


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
    return list(metadata.VARIABLE_STAT_NAMES)


def by_stat_names(raw, columns):
    """``(n, len(columns))`` statistics vectors as ``(n, stats)`` with the
    columns of ``VARIABLE_STAT_NAMES`` (NaN where ``columns`` lacks one)."""
    matrix = np.full((len(raw), len(metadata.VARIABLE_STAT_NAMES)), np.nan)
    for position, name in enumerate(metadata.VARIABLE_STAT_NAMES):
        if name in columns:
            matrix[:, position] = raw[:, columns.index(name)]
    return matrix
