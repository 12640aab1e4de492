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
"""

import collections
import os

import numpy as np
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.backend.event_processing import io_wrapper
from tensorboard.compat import tf  # TensorFlow's gfile, or TensorBoard's stub
from tensorboard.util import tensor_util

from tb_gradients.analysis import series
from tb_gradients.format import metadata
from tb_gradients.format import scalars as scalars_format
from tb_gradients.format import variable_stats

SCALAR_PLUGIN = "scalars"


class Run:
    """The gradient series of one run directory.

    Attributes:
      name: the run's name (relative to the log directory it was found in).
      directory: the run directory.
      sources: ``{"training" | "probe": series.SourceSeries}``, the sources
        recorded.
    """

    def __init__(self, name, directory, sources):
        self.name = name
        self.directory = directory
        self.sources = sources


class _Series:
    """One tag's samples: latest recording per step, and its metadata."""

    def __init__(self):
        self.content = None
        self.plugin = None
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


def _read_series(directory):
    """``{tag: _Series}`` of the gradients plugin's tensors and of the
    ``gradients/...`` scalars of one run directory."""
    tags = collections.defaultdict(_Series)
    order = 0
    for path in _event_files(directory):
        for event in event_file_loader.EventFileLoader(path).Load():
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
                        entry.content = metadata.parse_plugin_metadata(
                            plugin.content)
                if not value.HasField("tensor"):
                    continue
                order += 1
                entry.add(int(event.step), event.wall_time, order,
                          tensor_util.make_ndarray(value.tensor))
    return tags


def _stats_row(content, vector):
    """A stats vector mapped onto ``VARIABLE_STAT_NAMES`` by its column
    names (all NaN when it is not as long as its announced columns)."""
    columns = variable_stats.stat_columns(content)
    vector = np.asarray(vector, np.float64).reshape(1, -1)
    if vector.shape[1] != len(columns):
        return np.full(len(variable_stats.VARIABLE_STAT_NAMES), np.nan)
    return variable_stats.by_stat_names(vector, columns)[0]


def _source_series(source, tags):
    variables, window = [], "epoch"
    for tag, entry in tags.items():
        content = entry.content
        if (content is None or content.get("kind") !=
                metadata.KIND_VARIABLE_STATS
                or content.get("source") != source):
            continue
        window = content.get("window", "epoch")
        variables.append((content, entry))
    if not variables:
        return None
    variables.sort(key=lambda item: (item[0].get("index", 0),
                                     str(item[0].get("variable"))))
    steps = sorted({step for _, entry in variables
                    for step in entry.samples})
    position = {step: i for i, step in enumerate(steps)}
    width = len(variable_stats.VARIABLE_STAT_NAMES)
    stats = np.full((len(steps), len(variables), width), np.nan)
    described = []
    for v, (content, entry) in enumerate(variables):
        described.append({
            "name": str(content.get("variable")),
            "layer": str(content.get("layer")),
            "index": content.get("index", v),
            "shape": list(content.get("shape") or [])})
        for step, vector in entry.values().items():
            stats[position[step], v] = _stats_row(content, vector)
    scalars = {}
    for name in scalars_format.GLOBAL_STAT_NAMES:
        entry = tags.get(metadata.scalar_tag(source, name))
        if entry is None:
            continue
        values = np.full(len(steps), np.nan)
        for step, value in entry.values().items():
            if step in position:
                values[position[step]] = float(np.asarray(value))
        scalars[name] = values
    tables = {}
    entry = tags.get(metadata.steps_tag(source))
    if entry is not None:
        tables = {step: np.asarray(value, np.float64).reshape(-1, 2)
                  for step, value in entry.values().items()}
    return series.SourceSeries(source, window, steps, described, stats,
                               scalars, tables)


def load_run(directory, name=None):
    """The gradient series of one run directory (a `Run`; its ``sources``
    is empty when it holds no gradient data)."""
    tags = _read_series(directory)
    sources = {}
    for source in metadata.SOURCES:
        found = _source_series(source, tags)
        if found is not None:
            sources[source] = found
    return Run(name if name is not None else directory, directory, sources)


def load_runs(logdir):
    """``{run name: Run}`` of every run under ``logdir`` with gradient
    data.

    Raises:
      ValueError: ``logdir`` is not a readable directory.
    """
    runs = {}
    for name, directory in run_directories(logdir):
        run = load_run(directory, name)
        if run.sources:
            runs[name] = run
    return runs
