"""The quick demo trains every run with the data the Gradients tab needs."""

import os
import subprocess
import sys

import numpy as np
import pytest
from demo import experiments

from tb_gradients.format import metadata
from tb_gradients.format import variable_stats

from tests import eventfiles

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXPECTED_RUNS = {
    "vanishing_sigmoid", "vanishing_tanh", "vanishing_relu",
    "vanishing_sigmoid_glorot", "evolution_digits_cnn", "evolution_iris_mlp",
    "evolution_diabetes_regression", "evolution_forda_cnn", "recurrent_lstm",
    "recurrent_gru", "recurrent_simple_rnn", "recurrent_bidirectional_lstm",
    "exploding_high_learning_rate", "deep_transformer",
}


@pytest.fixture(scope="module")
def demo_logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("demo") / "runs"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "demo.train", "--quick", "--logdir",
         str(logdir)], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return logdir


@pytest.fixture(scope="module")
def runs(demo_logdir):
    return {name: eventfiles.load(demo_logdir / name / "train")
            for name in sorted(os.listdir(demo_logdir))}


def test_every_run_is_there(runs):
    assert set(runs) == EXPECTED_RUNS


def test_every_run_has_what_the_tab_draws(runs):
    for name, series in runs.items():
        stats_tags = [t for t in series
                      if t.startswith("gradients/training/variable/")]
        assert stats_tags, name
        epochs = sorted(series[stats_tags[0]])
        assert len(epochs) >= 4, name
        for tag in stats_tags:
            variable = tag[len("gradients/training/variable/"):]
            assert sorted(series[metadata.heatmap_tag("training",
                                                      variable)]) == epochs
        assert sorted(series[metadata.scalar_tag("training", "norm")]) == epochs
        assert metadata.steps_tag("training") in series


def test_recurrent_runs_have_timestep_gradients(runs):
    for name in ("recurrent_lstm", "recurrent_gru", "recurrent_simple_rnn",
                 "recurrent_bidirectional_lstm"):
        series = runs[name]
        sequence = series[metadata.timesteps_tag("probe", "sequence")]
        assert next(iter(sequence.values())).shape == (16, 40, 24)
        last = series[metadata.timesteps_tag("probe", "last")]
        assert next(iter(last.values())).shape == (16, 24)
        if name != "recurrent_simple_rnn":
            assert metadata.gates_tag("training", "sequence") in series


def test_exploding_run_counts_non_finite_gradients(runs):
    series = runs["exploding_high_learning_rate"]
    counts = series[metadata.scalar_tag("training", "nan_count")]
    assert max(float(v) for v in counts.values()) > 0
    assert float(counts[0]) == 0  # it starts finite and blows up


def first_layer_mean_abs(series):
    tag = metadata.variable_stats_tag("training", "dense_1/kernel")
    column = variable_stats.VARIABLE_STAT_NAMES.index("mean_abs")
    return np.mean([v[column] for v in series[tag].values()])


def test_vanishing_gradient_shows_in_the_first_layer(runs):
    sigmoid = first_layer_mean_abs(runs["vanishing_sigmoid"])
    tanh = first_layer_mean_abs(runs["vanishing_tanh"])
    relu = first_layer_mean_abs(runs["vanishing_relu"])
    assert sigmoid * 10 <= tanh
    assert sigmoid * 10 <= relu


def test_experiment_list_matches_the_readme():
    with open(os.path.join(ROOT, "README.md")) as readme:
        text = readme.read()
    for name in experiments.EXPERIMENTS:
        assert name in text
