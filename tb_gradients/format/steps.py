"""The ``steps`` kind: one row per optimizer step of a window, the global
gradient L2 norm and max |g| of that step (training source only)."""

import numpy as np

from tb_gradients.format import decoding
from tb_gradients.format import metadata

# Columns of the per-step tensor (training source).
STEP_COLUMNS = ("l2", "max_abs")


def write_steps(batch, source, step_table):
    """Per-step ``(l2, max_abs)`` rows of one window, float32 ``(n, 2)``."""
    summary_metadata = metadata.plugin_metadata(
        metadata.KIND_STEPS, source, window=batch.window,
        description="Per-step global gradient L2 norm and max |g|",
        columns=list(STEP_COLUMNS))
    table = np.asarray(step_table, dtype=np.float32).reshape(-1, 2)
    batch.tensor(metadata.steps_tag(source), table, summary_metadata)


def step_columns(content):
    """The columns of a ``steps`` series (its ``columns`` field, else
    `STEP_COLUMNS`)."""
    columns = content.get("columns")
    if isinstance(columns, list) and columns and all(
            isinstance(c, str) for c in columns):
        return list(columns)
    return list(STEP_COLUMNS)


def decode(content, value):
    """One window's stored per-step table, checked: float
    ``(steps, len(columns))``, as float64.

    Raises:
      decoding.ReadError: for any other shape or dtype.
    """
    width = len(step_columns(content))
    return decoding.checked(
        value, f"a float table of shape (steps, {width})", ndim=2,
        shape=(None, width)).astype(np.float64, copy=False)
