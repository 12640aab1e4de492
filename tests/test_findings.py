"""Findings on real training runs: the demo's runs, a layer whose gradient
turns NaN at a known step, dead and healthy ReLU networks.

Every rule's input is recorded by `GradientTensorBoard` during a real
`fit`; the expected answers come from the runs' construction and from
independent recomputations (a plain GradientTape loop, numpy), not from
the rules.
"""

import json
import os
import re
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from demo import experiments
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from tb_gradients import GradientTensorBoard
from tb_gradients.analysis import diagnose
from tb_gradients.analysis import findings
from tb_gradients.analysis import reader
from tb_gradients.format import findings_table
from tb_gradients.format import metadata

from tests import damaged_logdirs
from tests import eventfiles

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAN_STEP = 10  # the 0-based optimizer step whose gradient of bad/w is NaN


class NaNGradientFrom(keras.layers.Layer):
    """A Dense-like layer whose weight gradient is NaN from a given train
    step on (its forward pass stays finite), as a buggy custom op would."""

    def __init__(self, step, units=3, **kwargs):
        super().__init__(**kwargs)
        self.step, self.units = step, units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units),
                                 initializer="glorot_uniform", name="w")
        self.calls = self.add_weight(shape=(), initializer="zeros",
                                     trainable=False, name="calls")

    def call(self, x, training=False):
        calls = tf.convert_to_tensor(self.calls)  # train steps before this
        if training:
            self.calls.assign_add(1.0)
        step = self.step

        @tf.custom_gradient
        def poisoned(w):
            def gradient(upstream):
                return tf.where(calls >= step,
                                tf.fill(tf.shape(upstream), np.nan), upstream)
            return tf.identity(w), gradient

        return tf.matmul(x, poisoned(self.w))


def _blobs(samples=256, features=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, features)).astype("float32")
    y = (x[:, 0] * x[:, 1] + x[:, 2] > 0).astype("int64")
    return x, y


def _mostly_dead_bias(shape, dtype=None):
    """30 of 32 units of a ReLU layer switched off for good (their
    pre-activation stays far below 0); 2, with a positive bias, keep the
    gradient flowing."""
    return tf.constant([-10.0] * 30 + [1.0] * (shape[0] - 30), dtype)


def _relu_net(logdir, bias_initializer="zeros", epochs=4, **callback):
    """A ReLU MLP; ``bias_initializer`` of its ``hidden_2`` layer."""
    x, y = _blobs()
    keras.utils.set_random_seed(4)
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(32, activation="relu", name="hidden_1",
                           kernel_initializer="he_normal"),
        keras.layers.Dense(32, activation="relu", name="hidden_2",
                           kernel_initializer="he_normal",
                           bias_initializer=bias_initializer),
        keras.layers.Dense(32, activation="relu", name="hidden_3",
                           kernel_initializer="he_normal"),
        keras.layers.Dense(2, activation="softmax", name="output"),
    ])
    model.compile(keras.optimizers.SGD(0.05),
                  "sparse_categorical_crossentropy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=32, epochs=epochs, verbose=0,
                  callbacks=[GradientTensorBoard(str(logdir), **callback)])
    return model, caught


def _nan_run(logdir, epochs=3, **callback):
    x, y = _blobs(64, 4)
    keras.utils.set_random_seed(2)
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(5, activation="tanh", name="first"),
        NaNGradientFrom(NAN_STEP, name="bad"),
        keras.layers.Dense(2, activation="softmax", name="out"),
    ])
    model.compile("sgd", "sparse_categorical_crossentropy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, batch_size=8, epochs=epochs, verbose=0,
                            callbacks=[GradientTensorBoard(str(logdir),
                                                           **callback)])
    return history, caught


def _findings_of(run_dir):
    return findings.evaluate(reader.load_run(str(run_dir)).sources)


def _kinds(found, severities=("warning", "error")):
    return {f.kind for f in found if f.severity in severities}


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """The demo's vanishing and exploding runs, a NaN run, a dead and a
    healthy ReLU network, under one log directory."""
    root = tmp_path_factory.mktemp("findings")
    experiments.vanishing(str(root), quick=True)
    experiments.exploding(str(root), quick=True)
    _nan_run(root / "nan_layer")
    _relu_net(root / "dead_relu", bias_initializer=_mostly_dead_bias)
    _relu_net(root / "he_relu")
    return root


# -- the demo's runs ------------------------------------------------------


def _step_rms(run_dir):
    """Per epoch and Dense kernel (input to output), RMS of the mean step
    gradient, recomputed from the recorded l2, size and steps."""
    series = eventfiles.load(os.path.join(run_dir, "train"))
    names = [f"dense_{i}/kernel" for i in range(1, 5)] + ["output/kernel"]
    epochs = sorted(series[metadata.variable_stats_tag("training",
                                                       names[0])])
    rows = []
    for epoch in epochs:
        row = []
        for name in names:
            s = eventfiles.variable_stats(series, "training", name, epoch)
            row.append(s["l2"] / np.sqrt(s["size"]) / s["steps"])
        rows.append(row)
    return np.array(rows)


def test_sigmoid_random_normal_run_vanishes_in_its_first_layers(logdir):
    found = _findings_of(logdir / "vanishing_sigmoid" / "train")
    vanishing = [f for f in found if f.kind == "vanishing"]
    assert len(vanishing) == 1 and vanishing[0].severity == "warning"
    finding = vanishing[0]
    assert finding.layer == "dense_1" and finding.epoch == 0
    assert finding.evidence["layers"][:2] == ["dense_1", "dense_2"]
    assert "output" not in finding.evidence["layers"]
    rms = _step_rms(logdir / "vanishing_sigmoid")
    assert np.log10(rms[0, -1] / rms[0, 0]) >= findings.VANISHING_DECADES
    assert "dense_1" in finding.message


@pytest.mark.parametrize("run", ["vanishing_relu", "vanishing_tanh"])
def test_relu_and_tanh_runs_do_not_vanish(logdir, run):
    found = _findings_of(logdir / run / "train")
    assert "vanishing" not in {f.kind for f in found}
    rms = _step_rms(logdir / run)
    assert (np.log10(rms[:, -1] / rms[:, 0]) < findings.VANISHING_DECADES
            ).all()


def test_sigmoid_glorot_run_vanishes_too_and_does_not_learn(logdir):
    """Glorot initialisation does not rescue this sigmoid network (the
    article says so: "less pronounced" than changing the activation): its
    first layer's gradient stays two orders of magnitude below the
    output's and its loss stays at chance, so the rule reports it."""
    found = _findings_of(logdir / "vanishing_sigmoid_glorot" / "train")
    assert "vanishing" in _kinds(found)
    accumulator = event_accumulator.EventAccumulator(
        str(logdir / "vanishing_sigmoid_glorot" / "train"),
        size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    losses = [float(tensor_util.make_ndarray(e.tensor_proto))
              for e in accumulator.Tensors("epoch_loss")]
    assert min(losses) > 0.69  # ln 2 = 0.693: chance for 2 classes


def _tape_first_nonfinite_step():
    """The demo's exploding run replayed with a plain GradientTape loop:
    the first step whose gradient is not finite, and its variables."""
    x, y = experiments.raw_diabetes()
    model = experiments.exploding_mlp()
    variables = model.trainable_variables
    for step in range(100):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
        gradients = tape.gradient(loss, variables)
        bad = [v.path.split("/", 1)[1] for v, g in zip(variables, gradients)
               if not np.isfinite(g.numpy()).all()]
        if bad:
            return step, bad
        for v, g in zip(variables, gradients):
            v.assign_sub(experiments.EXPLODING_LEARNING_RATE * g)
    raise AssertionError("the replay did not diverge")


def test_exploding_run_explodes_then_turns_nonfinite_at_the_right_step(
        logdir):
    found = _findings_of(logdir / "exploding_high_learning_rate" / "train")
    by_kind = {f.kind: f for f in found}
    assert by_kind["exploding"].severity == "error"
    assert by_kind["nonfinite"].severity == "error"
    step, variables = _tape_first_nonfinite_step()
    nonfinite = by_kind["nonfinite"]
    assert nonfinite.step == step
    assert nonfinite.epoch == step  # one full-batch step per epoch
    assert nonfinite.variable == variables[0]
    assert set(nonfinite.evidence["variables"]) == set(variables)
    assert by_kind["exploding"].epoch < nonfinite.epoch


# -- NaN from a known step, in one variable ----------------------------------


def test_nonfinite_names_the_variable_and_the_step(logdir):
    found = _findings_of(logdir / "nan_layer" / "train")
    nonfinite = [f for f in found if f.kind == "nonfinite"]
    assert len(nonfinite) == 1
    finding = nonfinite[0]
    assert (finding.severity, finding.variable, finding.layer,
            finding.step) == ("error", "bad/w", "bad", NAN_STEP)
    assert finding.epoch == NAN_STEP // 8  # 8 steps per epoch
    assert finding.evidence["variables"] == ["bad/w"]
    # every other variable turned non-finite one step later
    series = eventfiles.load(logdir / "nan_layer" / "train")
    for name in ("first/kernel", "first/bias", "out/kernel", "out/bias"):
        stats = eventfiles.variable_stats(series, "training", name, 2)
        assert stats["first_nonfinite_step"] == NAN_STEP + 1


def test_the_callback_warns_once_writes_the_text_tab_and_can_stop(tmp_path):
    history, caught = _nan_run(tmp_path / "stop", epochs=4,
                               stop_on=("nonfinite",))
    messages = [str(w.message) for w in caught
                if "GradientTensorBoard" in str(w.message)]
    reports = [m for m in messages if "first held NaN" in m]
    assert len(reports) == 2  # the finding, and the stop naming it
    assert "stopping training" in reports[1] and "bad/w" in reports[1]
    assert len(history.history["loss"]) == 2  # stopped after epoch 1
    accumulator = event_accumulator.EventAccumulator(
        str(tmp_path / "stop" / "train"),
        size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    events = accumulator.Tensors(findings_table.FINDINGS_TAG)
    assert [e.step for e in events] == [1]
    text = tensor_util.make_ndarray(events[0].tensor_proto).item().decode()
    assert "| error | nonfinite | bad | bad/w | 1 | 10 |" in text
    assert accumulator.SummaryMetadata(
        findings_table.FINDINGS_TAG).plugin_data.plugin_name == "text"


def test_bad_stop_on(tmp_path):
    with pytest.raises(ValueError, match=r"stop_on.*'nan'.*Received: "
                       r"stop_on=\('nan',\)"):
        GradientTensorBoard(str(tmp_path), stop_on=("nan",))
    with pytest.raises(TypeError, match="stop_on.*Received: "
                       "stop_on='nonfinite'"):
        GradientTensorBoard(str(tmp_path), stop_on="nonfinite")


# -- dead units --------------------------------------------------------------


def test_dead_relu_layer_is_named_with_its_fraction(logdir):
    found = _findings_of(logdir / "dead_relu" / "train")
    dead = [f for f in found if f.kind == "dead_units"
            and f.severity == "warning"]
    assert [f.layer for f in dead] == ["hidden_2"]
    assert dead[0].evidence["dead_fraction"] == 30 / 32
    assert dead[0].evidence["units"] == 32
    # recomputed: the kernel columns of hidden_2 that never moved
    series = eventfiles.load(logdir / "dead_relu" / "train")
    last = max(series[metadata.variable_stats_tag("training",
                                                  "hidden_2/kernel")])
    for name in ("hidden_2/kernel", "hidden_2/bias"):
        assert eventfiles.variable_stats(series, "training", name, last)[
            "dead_units"] == 30 / 32


@pytest.mark.parametrize("value", [np.inf, np.nan, 40.0])
def test_damaged_evidence_is_never_printed_as_a_percentage(logdir, tmp_path,
                                                           value):
    """The dead ReLU run with its statistics overwritten (Inf, NaN, or a
    fraction of 4,000 %) where finite fractions belong: the dead-units
    rule stays silent on what says nothing, and no message prints
    ``inf%``, ``nan%`` or a share over 100 %."""
    source = logdir / "dead_relu" / "train"
    target = tmp_path / "train"
    target.mkdir()
    for name in os.listdir(source):
        events = damaged_logdirs.read_events(str(source / name))
        for event in events:
            for item in event.summary.value:
                if item.tag.startswith("gradients/training/variable/"):
                    vector = tensor_util.make_ndarray(item.tensor).copy()
                    vector[2:] = value
                    item.tensor.CopyFrom(tensor_util.make_tensor_proto(vector))
        damaged_logdirs.write_events(str(target / name), events)
    found = _findings_of(target)
    assert "dead_units" not in {f.kind for f in found}
    for finding in found:
        assert not re.search(r"(inf|nan)\s*%|\d{4,}%", finding.message,
                             re.IGNORECASE), finding.message


def test_a_layer_after_fully_dead_ones_is_reported_once(tmp_path):
    """Every unit of hidden_2 dead: hidden_1 gets no gradient at all and
    hidden_3 no input. One finding, not one per layer."""
    _relu_net(tmp_path, keras.initializers.Constant(-10.0), epochs=2)
    found = [f for f in _findings_of(tmp_path / "train")
             if f.kind == "dead_units"]
    assert len(found) == 1
    assert found[0].evidence["dead_fraction"] == 1.0
    assert "hidden_1" in found[0].evidence["layers_without_gradient"]


def test_he_initialised_relu_network_has_no_warning(logdir):
    found = _findings_of(logdir / "he_relu" / "train")
    assert not _kinds(found), [f.message for f in found]


def test_the_callback_reports_dead_units_live(tmp_path):
    _, caught = _relu_net(tmp_path, _mostly_dead_bias, epochs=3)
    reports = [str(w.message) for w in caught
               if "GradientTensorBoard: warning" in str(w.message)]
    assert len(reports) == 1 and "hidden_2" in reports[0]


# -- the command -------------------------------------------------------------


def _command(*args):
    return subprocess.run(
        [sys.executable, "-m", "tb_gradients.diagnose", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_command_json_lists_every_run(logdir):
    completed = _command(logdir, "--json")
    assert completed.returncode == 1, completed.stderr
    body = json.loads(completed.stdout, parse_constant=lambda name: (
        pytest.fail(f"non-strict JSON constant {name}")))
    runs = {entry["run"]: entry["findings"] for entry in body["runs"]}
    assert sorted(runs) == sorted(
        name for name, _ in reader.run_directories(str(logdir)))
    assert "nan_layer/train" in runs and "he_relu/train" in runs
    first = runs["nan_layer/train"][0]
    assert sorted(first) == sorted(["kind", "severity", "variable", "layer",
                                    "epoch", "step", "message", "evidence"])
    assert (first["kind"], first["variable"], first["step"]) == (
        "nonfinite", "bad/w", NAN_STEP)
    for found in runs.values():
        ranks = [findings.SEVERITIES.index(f["severity"]) for f in found]
        assert ranks == sorted(ranks, reverse=True)
    assert not [f for f in runs["he_relu/train"]
                if f["severity"] != "info"]


def test_command_exit_codes(logdir, tmp_path):
    assert _command(logdir / "he_relu").returncode == 0
    text = _command(logdir / "vanishing_sigmoid")
    assert text.returncode == 1 and "vanishing" in text.stdout
    missing = _command(tmp_path / "missing")
    assert missing.returncode == 2 and "missing" in missing.stderr
    assert _command().returncode == 2
    assert _command(logdir, "--no-such-flag").returncode == 2


def test_command_in_process_equals_the_plugin_route(logdir):
    from werkzeug import test as werkzeug_test

    from tests.test_plugin_wsgi import get_json
    from tests.test_plugin_wsgi import make_app

    app, _, _ = make_app(logdir)
    client = werkzeug_test.Client(app)
    for name, found, _ in diagnose.diagnose(str(logdir)):
        served = get_json(client, "/findings", run=name)["findings"]
        assert [{k: f[k] for k in ("kind", "severity", "variable", "epoch",
                                   "step")} for f in served] == [
            {k: f.to_json()[k] for k in ("kind", "severity", "variable",
                                         "epoch", "step")} for f in found]
        for finding in served:
            assert finding["source"] in metadata.SOURCES
            assert finding["view"] in findings.VIEWS


# -- the reader --------------------------------------------------------------


def test_reader_equals_tensorboards_reader(logdir):
    run = reader.load_run(str(logdir / "vanishing_tanh" / "train"))
    training = run.sources["training"]
    series = eventfiles.load(logdir / "vanishing_tanh" / "train")
    for v, name in enumerate(training.names):
        tag = metadata.variable_stats_tag("training", name)
        assert training.steps.tolist() == sorted(series[tag])
        expected = np.stack([series[tag][s] for s in training.steps])
        np.testing.assert_array_equal(training.stats[:, v], expected)
    assert training.scalar("norm") == pytest.approx(
        [eventfiles.scalar(series, "training", "norm", s)
         for s in training.steps])
    frame = training.to_pandas()
    assert len(frame) == len(training.steps) * len(training.names)
    assert list(frame.columns[:2]) == ["step", "variable"]


# -- loss scaling ------------------------------------------------------------


def _loss_scaled_run(logdir, nan_from):
    """A model trained with a LossScaleOptimizer; the layer ``bad``'s
    gradient is NaN from train step ``nan_from`` on (None: never)."""
    x, y = _blobs(64, 4)
    keras.utils.set_random_seed(2)
    bad = (NaNGradientFrom(nan_from, name="bad") if nan_from is not None
           else keras.layers.Dense(3, use_bias=False, name="bad"))
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(5, activation="tanh", name="first"), bad,
        keras.layers.Dense(2, activation="softmax", name="out"),
    ])
    model.compile(keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.05)), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=4, verbose=0,
              callbacks=[GradientTensorBoard(str(logdir))])


def test_steps_that_keep_being_skipped_are_a_warning_not_an_error(
        tmp_path):
    """Under loss scaling a non-finite gradient is skipped, never applied:
    no `nonfinite` error, but a warning once every step is skipped for
    several epochs in a row."""
    _loss_scaled_run(tmp_path / "skipping", nan_from=0)
    series = eventfiles.load(tmp_path / "skipping" / "train")
    skipped = [eventfiles.scalar(series, "training", "skipped_steps", e)
               for e in range(4)]
    assert skipped == [8, 8, 8, 8]
    found = [f for f in _findings_of(tmp_path / "skipping" / "train")
             if f.kind == "nonfinite"]
    assert [(f.severity, f.epoch) for f in found] == [("warning", 0)]
    _loss_scaled_run(tmp_path / "healthy", nan_from=None)
    assert not [f for f in _findings_of(tmp_path / "healthy" / "train")
                if f.kind == "nonfinite"]
