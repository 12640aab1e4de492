"""Reads event files back with TensorBoard's own reader."""

import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from tb_gradients.format import metadata


from tb_gradients.format import variable_stats as variable_stats_format
def load(run_dir):
    """All tensor series of a run directory: tag -> {step: ndarray}."""
    accumulator = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    series = {}
    for tag in accumulator.Tags()["tensors"]:
        series[tag] = {
            event.step: tensor_util.make_ndarray(event.tensor_proto)
            for event in accumulator.Tensors(tag)
        }
    series["__metadata__"] = {
        tag: accumulator.SummaryMetadata(tag)
        for tag in accumulator.Tags()["tensors"]
    }
    return series


def variable_stats(series, source, name, step):
    """The stats vector of one variable as a dict name -> float."""
    vector = series[metadata.variable_stats_tag(source, name)][step]
    return dict(zip(variable_stats_format.VARIABLE_STAT_NAMES, vector.tolist()))


def scalar(series, source, name, step):
    return float(np.asarray(series[metadata.scalar_tag(source, name)][step]))
