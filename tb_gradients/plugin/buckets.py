"""Reduction of long series: a step range, cut into buckets of steps.

A route asked for ``points`` answers, instead of every epoch, each bucket's
smallest and largest value (its envelope), so a chart of a long run costs
no more than its width in pixels; the latest epoch is always a bucket of
its own (docs/API.md, ``points``).
"""

import numpy as np


def in_range(epochs, start=None, end=None):
    """Boolean mask of the ``epochs`` within ``[start, end]`` (``None``: open)."""
    epochs = np.asarray(epochs, dtype=np.int64)
    mask = np.ones(len(epochs), dtype=bool)
    if start is not None:
        mask &= epochs >= start
    if end is not None:
        mask &= epochs <= end
    return mask


def bucket_starts(epochs, points):
    """Where the buckets of ``epochs`` begin, or ``None`` when not reduced.

    The steps from the first epoch to the last are split into
    ``points - 1`` spans of equal length, and the last epoch is a bucket
    of its own: bucket ``k`` holds the epochs ``e`` with
    ``floor((e - first) * (points - 1) / (last - first)) == k`` (so the
    latest values of a live run are exact). Buckets without an epoch are
    left out. Nothing is reduced while there are at most ``points``
    epochs.

    Args:
      epochs: Sorted distinct int epochs.
      points: The ``points`` parameter, or ``None``.

    Returns:
      ``None``, or the int64 indices into ``epochs`` of each bucket's first
      epoch (the input of ``np.ufunc.reduceat``).
    """
    epochs = np.asarray(epochs, dtype=np.int64)
    if points is None or len(epochs) <= points:
        return None
    first, last = int(epochs[0]), int(epochs[-1])
    offsets = (epochs - first).astype(object)  # exact for any int64 step
    index = np.array((offsets * (points - 1)) // (last - first),
                     dtype=np.int64)
    return np.flatnonzero(np.diff(index, prepend=-1)).astype(np.int64)


def bucket_bounds(epochs, starts):
    """``{"first": [...], "last": [...]}``: each bucket's first and last epoch."""
    epochs = np.asarray(epochs, dtype=np.int64)
    ends = np.append(starts[1:], len(epochs)) - 1
    return {"first": epochs[starts].tolist(), "last": epochs[ends].tolist()}


def envelope(values, starts):
    """Per bucket, the smallest and largest finite value along axis 0.

    Args:
      values: An array whose first axis follows the epochs (NaN where
        absent).
      starts: Output of `bucket_starts`.

    Returns:
      ``(low, high)`` arrays with one row per bucket; NaN where the bucket
      has no finite value.
    """
    values = np.asarray(values, dtype=np.float64)
    values = np.where(np.isfinite(values), values, np.nan)
    with np.errstate(invalid="ignore"):
        return (np.fmin.reduceat(values, starts, axis=0),
                np.fmax.reduceat(values, starts, axis=0))


def present_buckets(present, starts):
    """Whether each bucket holds at least one epoch that has data."""
    return np.logical_or.reduceat(np.asarray(present, dtype=bool), starts)
