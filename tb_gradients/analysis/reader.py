"""Reads the recorded gradient series of a log directory, without a server.

For notebooks and scripts::

    from tb_gradients.analysis import reader
    for name, run in reader.load_runs("logs").items():
        training = run.sources["training"]      # a series.SourceSeries
        norms = training.stat("l2")             # (windows, variables)
        frame = training.to_pandas()            # with pandas installed

Event files are read with TensorBoard's own event file loader, every file
of a run directory in name order (the order TensorBoard reads them); a
step recorded twice (a run restarted after a crash) keeps its latest
recording. Runs are named as TensorBoard names them: the directory's path
relative to the log directory, ``.`` for the log directory itself. Like the
plugin, it needs TensorBoard only: without TensorFlow it reads local files
through TensorBoard's own file-system stub.

Damaged or foreign data never hides what can be read: each value is
decoded by its kind's module in `format` (`format.decoding.ReadError` on
anything else), and what is skipped is listed in the run's ``errors`` (a
tag with metadata from a newer format version, or that is not JSON, or of
an unknown kind; a value of the wrong shape or dtype; an event file that is
empty, cut in the middle of a record, or unreadable).
"""

import collections
import functools
import os

import numpy as np
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.backend.event_processing import io_wrapper
from tensorboard.compat import tf  # TensorFlow's gfile, or TensorBoard's stub
from tensorboard.util import tensor_util

from tb_gradients.analysis import series
from tb_gradients.format import decoding
from tb_gradients.format import kinds
from tb_gradients.format import metadata
from tb_gradients.format import scalars as scalars_format
from tb_gradients.format import steps as steps_format
from tb_gradients.format import variable_stats

SCALAR_PLUGIN = "scalars"


class Run:
    """The gradient series of one run directory.

    Attributes:
      name: the run's name (relative to the log directory it was found in).
      directory: the run directory.
      sources: ``{"training" | "probe": series.SourceSeries}``, the sources
        recorded (what could be read of them).
      errors: the `format.decoding.ReadError`s of what was skipped, each
        naming its run, tag (or event file) and step where it has one.
    """

    def __init__(self, name, directory, sources, errors=()):
        self.name = name
        self.directory = directory
        self.sources = sources
        self.errors = list(errors)


class _Series:
    """One tag's samples: latest recording per step, and its metadata
    (``unreadable``: the `ReadError` of metadata this version cannot read;
    its values are then skipped)."""

    def __init__(self):
        self.content = None
        self.plugin = None
        self.unreadable = None
        self.samples = {}  # step -> (wall_time, order, value)

    def add(self, step, wall_time, order, value):
        kept = self.samples.get(step)
        if kept is None or (wall_time, order) >= kept[:2]:
            self.samples[step] = (wall_time, order, value)

    def values(self):
        return {step: sample[2] for step, sample in self.samples.items()}


def run_directories(logdir):
    """``[(run name, directory)]`` of every directory under ``logdir`` that
    holds event files, sorted by name.

    Raises:
      ValueError: ``logdir`` is not a readable directory.
    """
    if not tf.io.gfile.isdir(logdir):
        raise ValueError(f"not a directory: {logdir!r}")
    found = []
    for directory in io_wrapper.GetLogdirSubdirectories(logdir):
        name = os.path.relpath(directory, logdir)
        found.append((name.replace(os.sep, "/"), directory))
    return sorted(found)


def _event_files(directory):
    return sorted(
        os.path.join(directory, name)
        for name in tf.io.gfile.listdir(directory)
        if io_wrapper.IsSummaryEventsFile(os.path.join(directory, name)))


# TFRecord framing: a little-endian uint64 length and its CRC, the data,
# the data's CRC.
_RECORD_HEADER, _RECORD_FOOTER = 12, 4


def _framing_problem(path):
    """Why the records of an event file do not fill it exactly (empty, or
    cut in the middle of a record: a predicate of "event file <name>"), or
    ``None``. Reads the 12-byte headers only, of local files (a remote
    file is read as TensorBoard reads it, up to its last whole record)."""
    if "://" in path:
        return None
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if size == 0:
            return "is empty (no records, not even its version)"
        offset = 0
        while offset < size:
            f.seek(offset)
            header = f.read(_RECORD_HEADER)
            if len(header) < _RECORD_HEADER:
                break
            length = int.from_bytes(header[:8], "little")
            end = offset + _RECORD_HEADER + length + _RECORD_FOOTER
            if end > size:
                break
            offset = end
    if offset == size:
        return None
    return (f"ends in the middle of a record (at byte {offset} of "
            f"{size}: cut while being written, or damaged); the records "
            f"before it are read")


def _read_series(directory, run):
    """``({tag: _Series}, unreadable)``: the gradients plugin's tensors and
    the ``gradients/...`` scalars of one run directory, and a `ReadError`
    per event file or tag metadata that could not be read."""
    tags = collections.defaultdict(_Series)
    unreadable = []
    order = 0
    for path in _event_files(directory):
        where = os.path.basename(path)
        try:
            problem = _framing_problem(path)
            events = list(event_file_loader.EventFileLoader(path).Load())
        except (OSError, tf.errors.OpError) as error:
            unreadable.append(decoding.ReadError(
                f"event file {where} cannot be read: {error}", run=run))
            continue
        if problem is not None:
            unreadable.append(decoding.ReadError(
                f"event file {where} {problem}", run=run))
        for event in events:
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if not value.tag.startswith(f"{metadata.PLUGIN_NAME}/"):
                    continue
                entry = tags[value.tag]
                if value.HasField("metadata"):
                    plugin = value.metadata.plugin_data
                    entry.plugin = plugin.plugin_name
                    if plugin.plugin_name == metadata.PLUGIN_NAME:
                        _read_content(entry, plugin.content, run, value.tag)
                if not value.HasField("tensor"):
                    continue
                order += 1
                try:
                    array = tensor_util.make_ndarray(value.tensor)
                except (ValueError, TypeError) as error:
                    array = decoding.ReadError(
                        f"tensor cannot be decoded ({error})")
                entry.add(int(event.step), event.wall_time, order, array)
    for tag, entry in tags.items():
        if entry.unreadable is not None:
            unreadable.append(entry.unreadable)
    return tags, unreadable


def _read_content(entry, content, run, tag):
    """Parses a series' plugin metadata into ``entry`` (the first
    readable one counts; one that cannot be read marks the series)."""
    try:
        entry.content = metadata.read_plugin_metadata(content)
        entry.unreadable = None
    except decoding.ReadError as error:
        if entry.content is None:
            entry.unreadable = error.located(run=run, tag=tag)


class _Decoded:
    """Decodes the samples of the tags of one run, collecting the
    `ReadError` (run, tag, step) of each value left out."""

    def __init__(self, run):
        self.run = run
        self.unreadable = []

    def values(self, tag, entry, decode):
        """``{step: decode(value)}`` of ``entry``'s readable values."""
        decoded = {}
        for step, value in sorted(entry.values().items()):
            try:
                if isinstance(value, decoding.ReadError):
                    raise value
                decoded[step] = decode(value)
            except decoding.ReadError as error:
                self.unreadable.append(
                    error.located(run=self.run, tag=tag, step=step))
        return decoded


def _source_series(source, tags, decoded):
    variables, window = [], "epoch"
    for tag, entry in tags.items():
        content = entry.content
        if (content is None or content.get("kind") !=
                metadata.KIND_VARIABLE_STATS
                or content.get("source") != source):
            continue
        window = content.get("window", "epoch")
        vectors = decoded.values(
            tag, entry, functools.partial(variable_stats.decode, content))
        variables.append((content, vectors))
    if not variables:
        return None
    variables.sort(key=lambda item: (item[0].get("index", 0),
                                     str(item[0].get("variable"))))
    steps = sorted({step for _, vectors in variables for step in vectors})
    position = {step: i for i, step in enumerate(steps)}
    width = len(variable_stats.VARIABLE_STAT_NAMES)
    stats = np.full((len(steps), len(variables), width), np.nan)
    described = []
    for v, (content, vectors) in enumerate(variables):
        described.append({
            "name": str(content.get("variable")),
            "layer": str(content.get("layer")),
            "index": content.get("index", v),
            "shape": list(content.get("shape") or [])})
        columns = variable_stats.stat_columns(content)
        for step, vector in vectors.items():
            stats[position[step], v] = variable_stats.by_stat_names(
                vector.reshape(1, -1), columns)[0]
    scalars = {}
    for name in scalars_format.GLOBAL_STAT_NAMES:
        tag = metadata.scalar_tag(source, name)
        entry = tags.get(tag)
        if entry is None:
            continue
        values = np.full(len(steps), np.nan)
        for step, value in decoded.values(
                tag, entry, scalars_format.decode_scalar).items():
            if step in position:
                values[position[step]] = value
        scalars[name] = values
    tables = {}
    tag = metadata.steps_tag(source)
    entry = tags.get(tag)
    if entry is not None and entry.content is not None:
        tables = decoded.values(
            tag, entry, functools.partial(steps_format.decode, entry.content))
    return series.SourceSeries(source, window, steps, described, stats,
                               scalars, tables)


def load_run(directory, name=None):
    """The gradient series of one run directory (a `Run`; its ``sources``
    is empty when it holds no readable gradient data, and its ``errors``
    say what was skipped)."""
    name = name if name is not None else directory
    tags, unreadable = _read_series(directory, name)
    decoded = _Decoded(name)
    sources = {}
    for source in metadata.SOURCES:
        found = _source_series(source, tags, decoded)
        if found is not None:
            sources[source] = found
    for tag, entry in sorted(tags.items()):
        # the kinds read above were checked as they were decoded
        if entry.content is not None and entry.content["kind"] not in (
                metadata.KIND_VARIABLE_STATS, metadata.KIND_STEPS):
            decoded.values(tag, entry,
                           functools.partial(kinds.decode, entry.content))
    return Run(name, directory, sources, unreadable + decoded.unreadable)


def load_runs(logdir):
    """``{run name: Run}`` of every run under ``logdir`` with gradient
    data or with read errors (`Run.errors`): a damaged or foreign run is
    listed with what was skipped, and never hides the others.

    Raises:
      ValueError: ``logdir`` is not a readable directory.
    """
    runs = {}
    for name, directory in run_directories(logdir):
        run = load_run(directory, name)
        if run.sources or run.errors:
            runs[name] = run
    return runs
