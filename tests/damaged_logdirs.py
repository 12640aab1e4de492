"""Damaged copies of a real run: its event files rewritten record by record
(TensorFlow's own record reader and writer) the ways real logdirs get
damaged.

Each damage is a function of the parsed events that returns them changed,
and says which tags and steps it damaged; `damaged_logdir` writes the
intact run and one copy per damage side by side.
"""

import json
import os
import shutil

import numpy as np
from tensorboard.compat.proto import event_pb2
from tensorboard.util import tensor_util

from tb_gradients.format import metadata


def read_events(path):
    import tensorflow as tf

    return [event_pb2.Event.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(path)]


def write_events(path, events):
    import tensorflow as tf

    with tf.io.TFRecordWriter(path) as writer:
        for event in events:
            writer.write(event.SerializeToString())


def _values(events, tag):
    """``(event, value)`` of every value of ``tag``, in file order."""
    return [(event, value) for event in events
            for value in event.summary.value if value.tag == tag]


def _content(value):
    return json.loads(value.metadata.plugin_data.content)


def _set_content(value, content):
    value.metadata.plugin_data.content = (
        content if isinstance(content, bytes)
        else json.dumps(content).encode("utf-8"))


def _tags_of_kind(events, kind):
    tags = []
    for event in events:
        for value in event.summary.value:
            if (value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME
                    and _content(value)["kind"] == kind
                    and value.tag not in tags):
                tags.append(value.tag)
    return tags


def wrong_shape(events):
    """The first variable's statistics at its last step: a vector of one
    value; the per-step table at its first step: one value (a float32
    ``(1,)`` where ``(steps, 2)`` belongs)."""
    stats_tag = _tags_of_kind(events, metadata.KIND_VARIABLE_STATS)[0]
    event, value = _values(events, stats_tag)[-1]
    value.tensor.CopyFrom(tensor_util.make_tensor_proto(
        np.array([1.0], np.float64)))
    steps_tag = metadata.steps_tag("training")
    steps_event, steps_value = _values(events, steps_tag)[0]
    steps_value.tensor.CopyFrom(tensor_util.make_tensor_proto(
        np.array([1.0], np.float32)))
    return events, [(stats_tag, event.step), (steps_tag, steps_event.step)]


def wrong_dtype(events):
    """A heatmap in float64 where its metadata says uint8 codes; a
    timesteps tensor as strings."""
    heatmap_tag = _tags_of_kind(events, metadata.KIND_HEATMAP)[0]
    event, value = _values(events, heatmap_tag)[0]
    array = tensor_util.make_ndarray(value.tensor).astype(np.float64)
    value.tensor.CopyFrom(tensor_util.make_tensor_proto(array))
    timesteps_tag = _tags_of_kind(events, metadata.KIND_TIMESTEPS)[0]
    timesteps_event, timesteps_value = _values(events, timesteps_tag)[-1]
    timesteps_value.tensor.CopyFrom(tensor_util.make_tensor_proto(
        np.array([b"x", b"y"])))
    return events, [(heatmap_tag, event.step),
                    (timesteps_tag, timesteps_event.step)]


def garbled_bytes(events):
    """A statistics vector whose bytes do not fill its shape (a half
    written tensor): TensorBoard's own decoding fails on it."""
    stats_tag = _tags_of_kind(events, metadata.KIND_VARIABLE_STATS)[1]
    event, value = _values(events, stats_tag)[0]
    value.tensor.tensor_content = value.tensor.tensor_content[:8]
    return events, [(stats_tag, event.step)]


def not_json(events):
    """One variable's statistics series with metadata that is not JSON."""
    stats_tag = _tags_of_kind(events, metadata.KIND_VARIABLE_STATS)[-1]
    for _, value in _values(events, stats_tag):
        if value.HasField("metadata"):
            _set_content(value, b"{version: 2, kind: variable_stats")
    return events, [(stats_tag, None)]


def unknown_kind(events):
    """One heatmap series of a kind this version does not know."""
    heatmap_tag = _tags_of_kind(events, metadata.KIND_HEATMAP)[-1]
    for _, value in _values(events, heatmap_tag):
        if value.HasField("metadata"):
            _set_content(value, dict(_content(value), kind="sparkles"))
    return events, [(heatmap_tag, None)]


def newer_version(events):
    """Every plugin series from the next format version."""
    tags = []
    for event in events:
        for value in event.summary.value:
            if (value.HasField("metadata") and value.metadata.plugin_data
                    .plugin_name == metadata.PLUGIN_NAME):
                _set_content(value, dict(
                    _content(value), version=metadata.FORMAT_VERSION + 1))
                tags.append(value.tag)
    return events, [(tag, None) for tag in tags]


DAMAGES = {
    "wrong_shape": wrong_shape,
    "wrong_dtype": wrong_dtype,
    "garbled_bytes": garbled_bytes,
    "not_json": not_json,
    "unknown_kind": unknown_kind,
    "newer_version": newer_version,
}


def _event_file(run_dir):
    train = os.path.join(run_dir, "train")
    names = [name for name in os.listdir(train) if "tfevents" in name]
    assert len(names) == 1, names
    return os.path.join(train, names[0])


def cut_in_a_record(path):
    """Cuts the file in the middle of its last record: the records before
    it stay readable."""
    events = read_events(path)
    last = len(events[-1].SerializeToString())
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - last // 2)


def damaged_logdir(intact_run, root):
    """``root`` with the intact run (``intact``) and one damaged copy per
    damage.

    Returns:
      ``{run name: [(tag, step)]}`` of what each copy damaged; for
      ``"cut"`` (cut in the middle of its last record) and ``"empty"`` (an
      empty event file beside an intact one), the event file's name in
      place of a tag.
    """
    damaged = {}
    shutil.copytree(intact_run, os.path.join(root, "intact"))
    for name, damage in DAMAGES.items():
        run_dir = os.path.join(root, name)
        shutil.copytree(intact_run, run_dir)
        path = _event_file(run_dir)
        events, where = damage(read_events(path))
        write_events(path, events)
        damaged[f"{name}/train"] = where
    cut = os.path.join(root, "cut")
    shutil.copytree(intact_run, cut)
    cut_in_a_record(_event_file(cut))
    damaged["cut/train"] = [(os.path.basename(_event_file(cut)), None)]
    empty = os.path.join(root, "empty")
    shutil.copytree(intact_run, empty)
    empty_file = os.path.join(
        empty, "train", "events.out.tfevents.0000000000.empty.0.v2")
    open(empty_file, "wb").close()
    damaged["empty/train"] = [(os.path.basename(empty_file), None)]
    return damaged
