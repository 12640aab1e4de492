"""Probe data as batches: arrays split by ``probe_batch_size``, or the first
``probe_batches`` batches of a ``tf.data.Dataset`` (every backend reads
them)."""

import numpy as np
import tensorflow as tf


def _batches_from_arrays(data, batch_size):
    """Splits ``(x, y[, sample_weight])`` arrays into batches."""
    data = tuple(data)
    if len(data) not in (2, 3):
        raise ValueError(
            "probe_data must be (x, y) or (x, y, sample_weight). Received: "
            f"a tuple of {len(data)} elements")
    lengths = {int(np.shape(a)[0]) for a in tf.nest.flatten(data)
               if a is not None}
    if len(lengths) != 1:
        raise ValueError(
            "probe_data arrays must all have the same number of samples. "
            f"Received: lengths {sorted(lengths)}")
    total = lengths.pop()
    if total == 0:
        raise ValueError("probe_data holds no samples. Received: 0 samples")
    batches = []
    for start in range(0, total, batch_size):
        batches.append(tf.nest.map_structure(
            lambda a: None if a is None else np.asarray(a)[start:start + batch_size],
            data))
    return batches


def _batches_from_dataset(dataset, max_batches):
    batches = []
    for element in dataset.take(max_batches):
        if not isinstance(element, (tuple, list)) or len(element) not in (2, 3):
            raise ValueError(
                "probe_data datasets must yield (x, y) or (x, y, "
                f"sample_weight) batches. Received: an element {element!r:.200}")
        batches.append(tuple(element))
    if not batches:
        raise ValueError("probe_data is an empty dataset. Received: 0 batches")
    return batches


def probe_batches(probe_data, batch_size, max_batches):
    """Materialises probe data once as a list of batches.

    Arrays are used whole (split into ``batch_size`` batches); a
    ``tf.data.Dataset`` is assumed batched and at most ``max_batches`` of its
    batches are used, the same ones every epoch.
    """
    if isinstance(probe_data, tf.data.Dataset):
        return _batches_from_dataset(probe_data, max_batches)
    if isinstance(probe_data, (tuple, list)):
        return _batches_from_arrays(probe_data, batch_size)
    raise TypeError(
        "probe_data must be a tuple (x, y) or (x, y, sample_weight) of arrays "
        "or a tf.data.Dataset yielding such batches. Received: "
        f"probe_data of type {type(probe_data).__name__}")


def batch_size(batch):
    """Samples in one probe batch."""
    return int(tf.shape(tf.nest.flatten(batch[0])[0])[0])


def first_samples(batches, count):
    """The first ``count`` samples of a list of probe batches."""
    taken, collected = 0, []
    for batch in batches:
        if taken >= count:
            break
        n = int(tf.shape(tf.nest.flatten(batch[0])[0])[0])
        keep = min(n, count - taken)
        collected.append(tf.nest.map_structure(
            lambda a: None if a is None else np.asarray(a)[:keep], tuple(batch)))
        taken += keep
    x = tf.nest.map_structure(lambda *a: np.concatenate(a),
                              *[c[0] for c in collected])
    y = tf.nest.map_structure(lambda *a: np.concatenate(a),
                              *[c[1] for c in collected])
    weights = None
    if len(collected[0]) > 2 and collected[0][2] is not None:
        weights = np.concatenate([c[2] for c in collected])
    return x, y, weights
