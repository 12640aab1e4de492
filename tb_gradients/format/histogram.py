"""Histograms in the histograms plugin's ``(k, 3)`` format (left edge,
right edge, count), from the bounds and counts the window end returns: the
view ``TensorBoard(write_grads=True)`` gave, in TensorBoard's own
Histograms tab."""

import functools
import math

import numpy as np
from tensorboard.plugins.histogram import metadata as histogram_metadata

from tb_gradients.format import metadata


def histogram_rows(low, high, counts):
    """The histograms plugin's ``(k, 3)`` rows from bounds and counts.

    Edges are equally spaced from ``low`` to ``high`` (as `np.histogram`); a
    constant variable gets one unit-wide bucket around its value and empty
    ones after it; no finite value gives a ``(0, 3)`` array.
    """
    counts = np.asarray(counts, np.float64)
    bucket_count = counts.shape[0]
    low, high = float(low), float(high)
    if not counts.sum() or not (math.isfinite(low) and math.isfinite(high)):
        return np.zeros((0, 3), dtype=np.float64)
    if low == high:
        return np.array([[low - 0.5, high + 0.5, counts.sum()]] +
                        [[high + 0.5, high + 0.5, 0.0]] * (bucket_count - 1))
    edges = np.linspace(low, high, bucket_count + 1)
    return np.stack([edges[:-1], edges[1:], counts], axis=1)


def histogram_tables(low, high, counts):
    """`histogram_rows` of several variables of one bucket count at once.

    Args:
      low, high: ``(n,)`` bounds; counts: ``(n, k)``.

    Returns:
      a list of ``n`` arrays, each `histogram_rows`'s (the same values:
      the edges are `np.linspace`'s arithmetic, row by row).
    """
    counts = np.asarray(counts, np.float64)
    low = np.asarray(low, np.float64)
    high = np.asarray(high, np.float64)
    n, bucket_count = counts.shape
    with np.errstate(invalid="ignore", over="ignore"):
        step = (high - low) / bucket_count
        edges = (np.arange(bucket_count + 1, dtype=np.float64)[None, :]
                 * step[:, None] + low[:, None])
    edges[:, -1] = high
    tables = np.stack([edges[:, :-1], edges[:, 1:], counts], axis=2)
    # the others (empty, constant, non-finite, a step below the smallest
    # float) as `histogram_rows` says
    usable = ((counts.sum(axis=1) > 0) & np.isfinite(low) & np.isfinite(high)
              & (low != high) & (step != 0))
    return [tables[i] if usable[i]
            else histogram_rows(low[i], high[i], counts[i])
            for i in range(n)]


def _histogram_metadata(display_name, description):
    """The histograms plugin's metadata, built when the writer needs it
    (`writer.WindowBatch.tensor`)."""
    return functools.partial(histogram_metadata.create_summary_metadata,
                             display_name=display_name,
                             description=description)


def write_histogram(batch, source, variable, buckets):
    """One variable's window gradient as the histograms plugin's tensor."""
    summary_metadata = _histogram_metadata(
        display_name=f"{variable['name']} ({source} gradient)",
        description=f"Window gradient of {variable['name']} ({source})")
    batch.tensor(metadata.histogram_tag(source, variable["name"]),
                 np.asarray(buckets, np.float64), summary_metadata)
