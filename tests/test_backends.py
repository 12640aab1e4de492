"""On Keras's JAX and PyTorch backends the callback records what it records
on TensorFlow.

`tests.backend_training` runs the same trainings (initial weights from a
numpy generator, the same data, ``shuffle=False``) with
``KERAS_BACKEND=tensorflow``, ``jax`` and ``torch``, each in its own process
(Keras fixes its backend per process), all at once. Every statistic, global
scalar, per-step table, heatmap, histogram, timestep and per-gate summary
and finding of the JAX and the PyTorch runs must equal the TensorFlow run's
up to float round-off. The JAX process also trains a clone with a plain
`jax.grad` loop (an independent reference), and saves and reloads its
model; another process checks that an unsupported backend is refused.
"""

import collections
import json
import os
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

from tb_gradients.analysis import findings
from tb_gradients.analysis import reader
from tb_gradients.analysis import series
from tb_gradients.format import findings_table
from tb_gradients.format import heatmap as heatmap_format
from tb_gradients.format import metadata
from tb_gradients.format import scalars as scalars_format
from tb_gradients.format import variable_stats

from tests import backend_training as training
from tests import eventfiles
from tests import series_compare
from tests.test_statistics_exact import expected_stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Both backends apply the same gradients, computed by different kernels
# (XLA's fused reductions, TensorFlow's own): float32 round-off of another
# summation order (`series_compare`).
RTOL = series_compare.RTOL
# mixed_float16: the layers compute in float16 (unit round-off 2**-11), and
# the backends' float16 kernels round differently: ten float16 units.
RTOL_FLOAT16 = 10 * 2.0 ** -11

# The JAX reference trains a clone in another program: the same float32
# round-off, and the house tolerance of the independent recomputations
# (tests/test_statistics_exact.py).
REFERENCE_RTOL, REFERENCE_ATOL = 2e-4, 1e-6

CASES = [(scenario, source) for scenario in training.SCENARIOS
         for source in metadata.SOURCES]


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Replaces conftest's per-test Keras reset: these tests build no model
    in this process (every training runs in its own)."""
    yield


def backend_env(backend):
    return dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu",
                TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def trainings(tmp_path_factory):
    """``{backend: output directory}`` of `tests.backend_training` run on
    both backends at once."""
    root = tmp_path_factory.mktemp("backends")
    arguments = {"tensorflow": [], "jax": ["--reference", "--saving"],
                 "torch": []}
    processes = {}
    try:
        for backend, extra in arguments.items():
            processes[backend] = subprocess.Popen(
                [sys.executable, "-m", "tests.backend_training",
                 str(root / backend), *extra],
                cwd=ROOT, env=backend_env(backend), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True)
        for backend, process in processes.items():
            _, stderr = process.communicate(timeout=600)
            assert process.returncode == 0, f"{backend}:\n{stderr[-3000:]}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    return {backend: root / backend for backend in arguments}


class Logs:
    """Both backends' logs of every scenario, each read once."""

    def __init__(self, directories):
        self._directories = directories
        self._runs, self._tensors = {}, {}

    def series(self, backend, scenario, source):
        """The `series.SourceSeries` read by `reader.load_runs`."""
        key = (backend, scenario)
        if key not in self._runs:
            runs = reader.load_runs(str(self._directories[backend] / scenario))
            self._runs[key] = runs["train"]
        return self._runs[key].sources[source]

    def tensors(self, backend, scenario):
        """Every ``gradients/`` tensor series (TensorBoard's accumulator)."""
        key = (backend, scenario)
        if key not in self._tensors:
            self._tensors[key] = eventfiles.load(
                self._directories[backend] / scenario / "train")
        return self._tensors[key]


@pytest.fixture(scope="module")
def logs(trainings):
    return Logs(trainings)


def rtol_of(scenario):
    return RTOL_FLOAT16 if scenario == "mixed" else RTOL


# The backends compared with TensorFlow's recording, each test once per
# backend.
OTHER_BACKENDS = ("jax", "torch")


@pytest.fixture(params=OTHER_BACKENDS)
def backend(request):
    return request.param


def both(logs, backend, scenario, source):
    return (logs.series(backend, scenario, source),
            logs.series("tensorflow", scenario, source))


# -- the comparisons themselves -----------------------------------------------

INF, NAN = np.inf, np.nan
NONFINITE = (INF, -INF, NAN)


@pytest.mark.parametrize("got, want", [
    ([1.0], [INF]), ([INF], [1.0]), ([INF], [-INF]), ([-INF], [INF]),
    ([1.0], [-INF]), ([NAN], [INF]), ([INF], [NAN]), ([NAN], [1.0]),
    ([1.0], [NAN]), ([1.0, INF], [1.0, 1.0]), ([1.0, 2.0], [1.0, 2.1])])
def test_assert_close_refuses(got, want):
    """A non-finite value only where the reference has the same one (no
    tolerance covers it, however large), a finite one within tolerance."""
    with pytest.raises(AssertionError):
        series_compare.assert_close(got, want, RTOL, 0.0, "value")
    with pytest.raises(AssertionError):
        series_compare.assert_close(got, want, 1e-3, np.array(INF), "value")


@pytest.mark.parametrize("got, want", [
    ([INF], [INF]), ([-INF], [-INF]), ([NAN], [NAN]),
    ([1.0, INF, NAN, -INF], [1.0 + 1e-6, INF, NAN, -INF]),
    ([[0.0, 1e-9]], [[1e-9, 0.0]])])
def test_assert_close_accepts(got, want):
    series_compare.assert_close(got, want, RTOL, 1e-8, "value")


def small_series(what=None, name=None, value=None):
    """A `series.SourceSeries` of 2 windows and 2 variables, every figure
    finite but `first_nonfinite_step`; one figure of ``what``
    (``"statistics"``, ``"scalars"`` or ``"step tables"``) set to
    ``value``."""
    names = variable_stats.VARIABLE_STAT_NAMES
    stats = np.arange(1.0, 1.0 + 2 * 2 * len(names)).reshape(2, 2, len(names))
    stats[..., names.index("first_nonfinite_step")] = NAN
    scalars = {scalar: np.array([3.0, 4.0])
               for scalar in scalars_format.GLOBAL_STAT_NAMES}
    tables = {1: np.array([[1.0, 0.5], [2.0, 1.5]]),
              2: np.array([[3.0, 2.5]])}
    if what == "statistics":
        stats[1, 0, names.index(name)] = value
    elif what == "scalars":
        scalars[name][1] = value
    elif what == "step tables":
        tables[2][0, 1] = value
    variables = [{"name": f"dense/{weight}", "layer": "dense", "index": i,
                  "shape": shape} for i, (weight, shape) in enumerate(
                      [("kernel", [2, 3]), ("bias", [3])])]
    return series.SourceSeries("training", "epoch", [1, 2], variables, stats,
                               scalars, tables)


SERIES_COMPARISONS = {
    "statistics": series_compare.assert_same_statistics,
    "scalars": series_compare.assert_same_scalars,
    "step tables": series_compare.assert_same_step_tables,
}


@pytest.mark.parametrize("what, name", [
    ("statistics", "l2"), ("statistics", "mean"),
    ("statistics", "noise_scale"), ("statistics", "nan_count"),
    ("scalars", "step_l2_max"), ("scalars", "dissolving_norm"),
    ("scalars", "nan_count"), ("step tables", None)])
@pytest.mark.parametrize("value", NONFINITE)
def test_series_comparisons_match_nonfinite_values_exactly(what, name, value):
    """Statistics (within tolerance or exact), scalars and step tables: a
    non-finite figure equals only the same non-finite figure."""
    compare = SERIES_COMPARISONS[what]
    want = small_series(what, name, value)
    compare(small_series(what, name, value), want)
    compare(small_series(), small_series())
    others = [small_series()] + [small_series(what, name, other)
                                 for other in NONFINITE
                                 if repr(other) != repr(value)]
    for other in others:
        with pytest.raises(AssertionError):
            compare(other, want)
        with pytest.raises(AssertionError):
            compare(want, other)


# -- the recorded series are the same -----------------------------------------


@pytest.mark.parametrize("scenario", training.SCENARIOS)
def test_same_tags_steps_shapes_and_metadata(logs, backend, scenario):
    jax_logs = logs.tensors(backend, scenario)
    tf_logs = logs.tensors("tensorflow", scenario)
    tags = sorted(tag for tag in tf_logs if tag.startswith("gradients/"))
    assert tags == sorted(t for t in jax_logs if t.startswith("gradients/"))
    assert any("/variable/" in tag for tag in tags)
    for tag in tags:
        assert sorted(jax_logs[tag]) == sorted(tf_logs[tag]), tag
        for step, value in tf_logs[tag].items():
            assert jax_logs[tag][step].shape == value.shape, (tag, step)
            assert jax_logs[tag][step].dtype == value.dtype, (tag, step)
        jax_meta = jax_logs["__metadata__"][tag].plugin_data
        tf_meta = tf_logs["__metadata__"][tag].plugin_data
        assert jax_meta.plugin_name == tf_meta.plugin_name, tag
        assert (metadata.parse_plugin_metadata(jax_meta.content)
                == metadata.parse_plugin_metadata(tf_meta.content)), tag


@pytest.mark.parametrize("scenario, source", CASES)
def test_every_variable_statistic_equals_tensorflows(logs, backend, scenario, source):
    got, want = both(logs, backend, scenario, source)
    series_compare.assert_same_statistics(got, want, rtol_of(scenario),
                                          f"{scenario} {source}")


@pytest.mark.parametrize("scenario, source", CASES)
def test_global_scalars_equal_tensorflows(logs, backend, scenario, source):
    got, want = both(logs, backend, scenario, source)
    series_compare.assert_same_scalars(got, want, rtol_of(scenario),
                                       f"{scenario} {source}")


@pytest.mark.parametrize("scenario", training.SCENARIOS)
def test_per_step_tables_equal_tensorflows(logs, backend, scenario):
    got, want = both(logs, backend, scenario, "training")
    assert sorted(want.step_tables) != []
    series_compare.assert_same_step_tables(got, want, rtol_of(scenario),
                                           scenario)


def tensor_series(logs, backend, scenario, kind):
    """``[(tag, {step: backend's value}, {step: tensorflow value})]`` of one
    kind of plugin tensor (``"heatmap"``, ``"histogram"``...)."""
    jax_logs = logs.tensors(backend, scenario)
    tf_logs = logs.tensors("tensorflow", scenario)
    return [(tag, jax_logs[tag], tf_logs[tag]) for tag in sorted(tf_logs)
            if tag.startswith("gradients/") and tag.split("/")[2:3] == [kind]]


# One uint8 code step: a factor 10**(decades / (levels - 1)), about 5.6 %.
CODE_STEP = 10.0 ** (heatmap_format.HEATMAP_DECADES
                     / (heatmap_format.HEATMAP_CODE_LEVELS - 1)) - 1


def heatmap_values(logs, backend, scenario, tag, step, heatmap):
    """A heatmap's channels as values (uint8 codes decoded with the channel
    scales the same backend recorded)."""
    if heatmap.dtype != np.uint8:
        return heatmap.astype(np.float64)
    _, source, _, name = tag.split("/", 3)
    series = logs.series(backend, scenario, source)
    window, index = series.steps.tolist().index(step), series.names.index(name)
    return np.stack([
        heatmap_format.decode_log_uint8(codes, series.stat(scale)[window, index])
        for codes, scale in zip(heatmap, heatmap_format.HEATMAP_CHANNEL_SCALES)])


@pytest.mark.parametrize("scenario", training.SCENARIOS)
def test_heatmaps_equal_tensorflows(logs, backend, scenario):
    series = tensor_series(logs, backend, scenario, "heatmap")
    assert series
    rtol = rtol_of(scenario)
    for tag, got, want in series:
        _, source, _, name = tag.split("/", 3)
        recorded = logs.series("tensorflow", scenario, source)
        index = recorded.names.index(name)
        # |G| block mean and max: round-off relative to the window's largest
        # |G|; |C| and D block means: relative to A, at most the running sum
        # of those maxima
        largest = series_compare.finite(recorded.stat("max_abs")[:, index])
        accumulated = np.cumsum(largest)
        for window, step in enumerate(recorded.steps):
            jax_values = heatmap_values(logs, backend, scenario, tag, step,
                                        got[step])
            tf_values = heatmap_values(logs, "tensorflow", scenario, tag,
                                       step, want[step])
            atol = rtol * np.array([largest[window], largest[window],
                                    accumulated[window],
                                    accumulated[window]])
            quantised = rtol
            if want[step].dtype == np.uint8:
                # a value at a code's edge may round to the neighbouring
                # code; below 10**-decades of the scale it is code 0
                quantised += 1.01 * CODE_STEP
                atol = atol + 1.1 * 10.0 ** -heatmap_format.HEATMAP_DECADES * series_compare.finite(
                    [recorded.stat(scale)[window, index]
                     for scale in heatmap_format.HEATMAP_CHANNEL_SCALES])
            series_compare.assert_close(jax_values, tf_values, quantised,
                         atol[:, None, None], f"{tag} at {step}")


@pytest.mark.parametrize("scenario", training.SCENARIOS)
def test_histograms_equal_tensorflows(logs, backend, scenario):
    series = tensor_series(logs, backend, scenario, "histogram")
    assert series
    for tag, got, want in series:
        for step, buckets in want.items():
            other = got[step]
            edges = buckets[:, :2]
            series_compare.assert_close(other[:, :2], edges, rtol_of(scenario),
                         rtol_of(scenario) * series_compare.finite(edges).max(initial=0),
                         f"{tag} edges at {step}")
            assert other[:, 2].sum() == buckets[:, 2].sum(), (tag, step)
            if scenario != "mixed":
                # an element within round-off of an edge may change bucket
                moved = np.cumsum(other[:, 2]) - np.cumsum(buckets[:, 2])
                assert np.abs(moved).max(initial=0) <= 1, (tag, step)


def test_timestep_and_gate_summaries_equal_tensorflows(logs, backend):
    """The LSTM's d(loss)/d(output) per timestep (probe) and its per-gate
    weight figures (both sources). Each element is a sum of terms as large
    as the largest the series holds (`run_scale`)."""
    counts = {}
    for kind in ("timesteps", "timestep_norms", "gates", "gate_heatmap"):
        series = tensor_series(logs, backend, "recurrent", kind)
        counts[kind] = len(series)
        for tag, got, want in series:
            stacked = np.stack([want[step] for step in sorted(want)])
            scale = series_compare.run_scale(stacked)[0]
            if kind == "timestep_norms":
                # channel 1 is the mask: 1 at every valid timestep
                for step, value in want.items():
                    np.testing.assert_array_equal(got[step][1], value[1])
            elif kind != "gates":  # gates: per gate and column
                scale = scale.max()
            for step, value in want.items():
                series_compare.assert_close(got[step], value, RTOL, RTOL * scale,
                             f"{tag} at {step}")
    # one LSTM: its timesteps (probe), its gates and 3 weights per source
    assert counts == {"timesteps": 1, "timestep_norms": 1, "gates": 2,
                      "gate_heatmap": 6}, counts


@pytest.mark.parametrize("scenario", training.SCENARIOS)
def test_findings_equal_tensorflows(logs, backend, scenario):
    """The same findings, at the same windows (their messages' figures may
    differ in the last digit); each scenario's are those it is built to
    show (`training.FINDINGS`), so that there is something to compare."""
    def findings(backend):
        series = logs.tensors(backend, scenario).get(findings_table.FINDINGS_TAG,
                                                     {})
        return {step: [row.split(" | ")[:6]
                       for row in value.item().decode().splitlines()
                       if row.startswith("| ")]
                for step, value in series.items()}

    found = findings("tensorflow")
    # a table under its heading row, written where a finding is new
    assert found and all(len(rows) > 1 for rows in found.values()), (
        scenario, found)
    assert findings(backend) == found
    # the latest table holds every finding so far: each expected one, once
    # per source (the table does not say which)
    kinds = collections.Counter((row[0][2:], row[1], row[3])
                                for row in found[max(found)][1:])
    assert kinds == {finding: len(metadata.SOURCES)
                     for finding in training.FINDINGS[scenario]}, (
        scenario, found)
    if scenario == "nonfinite":
        assert any(row[1] == "nonfinite" and row[3] == "gate/w"
                   for rows in found.values() for row in rows), found


def test_scenarios_show_several_kinds_of_findings():
    kinds = {kind for expected in training.FINDINGS.values()
             for _, kind, _ in expected}
    assert sorted(training.FINDINGS) == sorted(training.SCENARIOS)
    assert all(training.FINDINGS.values())
    assert kinds >= {"nonfinite", "vanishing", "dead_units"}, kinds


def test_a_layer_of_two_kernels_is_named_once_with_each_kernels_evidence(
        logs):
    """The recurrent scenario's vanishing finding: the LSTM's kernel and
    recurrent kernel are one layer in the message, two in the evidence."""
    found = [f for f in findings.evaluate(
        {"training": logs.series("tensorflow", "recurrent", "training")})
        if f.kind == "vanishing"]
    assert found, "the recurrent scenario has a vanishing finding"
    finding = found[0]
    assert finding.evidence["layers"] == list(
        dict.fromkeys(finding.evidence["layers"]))
    assert finding.message.count("rec/lstm_cell") == 1, finding.message
    kernels = {"rec/lstm_cell/kernel", "rec/lstm_cell/recurrent_kernel"}
    assert kernels <= set(finding.evidence["step_rms"])
    assert kernels <= set(finding.evidence["decades_below_output"])


# -- each scenario does what it is for ----------------------------------------


def test_step_windows_span_epochs(logs):
    epoch_steps = training.MLP_STEPS_PER_EPOCH * training.MLP_EPOCHS
    ends = list(range(training.MLP_WINDOW, epoch_steps, training.MLP_WINDOW))
    for backend in OTHER_BACKENDS + ("tensorflow",):
        for source in ("training", "probe"):
            series = logs.series(backend, "mlp", source)
            assert series.window == training.MLP_WINDOW
            assert series.steps.tolist() == ends + [epoch_steps]
        steps = logs.series(backend, "mlp", "training").stat("steps")[:, 0]
        assert steps.tolist() == [4, 4, 4, 3]


def test_clipnorm_is_applied_before_the_capture(logs):
    """Each step's gradient is the clipped one (Keras clips each variable's
    gradient to `clipnorm`), though the loss's gradient is larger."""
    for backend in OTHER_BACKENDS + ("tensorflow",):
        series = logs.series(backend, "mlp", "training")
        tables = np.concatenate(list(series.step_tables.values()))
        count = len(series.names)
        assert tables[:, 0].max() <= np.sqrt(count) * training.MLP_CLIPNORM * (
            1 + 1e-6)
        assert np.all(series.stat("l2") <= series.stat("steps")
                      * training.MLP_CLIPNORM * (1 + 1e-6))
        probe = logs.series(backend, "mlp", "probe").stat("l2")
        assert probe.max() > 2 * training.MLP_CLIPNORM


def test_loss_scale_optimizer_skipped_steps_are_counted_alike(logs, backend):
    got, want = both(logs, backend, "mixed", "training")
    skipped = want.scalar("skipped_steps")
    assert skipped.sum() > 0  # the initial scale overflows float16
    np.testing.assert_array_equal(got.scalar("skipped_steps"), skipped)
    np.testing.assert_array_equal(
        want.scalar("steps") + skipped,
        np.full(training.MIXED_EPOCHS, training.MIXED_STEPS_PER_EPOCH))
    np.testing.assert_array_equal(got.scalar("steps"), want.scalar("steps"))


def test_accumulated_gradients_are_recorded_per_update(logs):
    updates = (training.ACCUMULATION_STEPS_PER_EPOCH
               // training.ACCUMULATION_STEPS)
    for backend in OTHER_BACKENDS + ("tensorflow",):
        series = logs.series(backend, "accumulation", "training")
        assert series.stat("steps")[:, 0].tolist() == [
            updates] * training.ACCUMULATION_EPOCHS
        assert [len(series.step_tables[step]) for step in series.steps] == [
            updates] * training.ACCUMULATION_EPOCHS


def test_nan_gradient_is_recorded_alike(logs):
    nan_epoch = training.NAN_STEP // training.NAN_STEPS_PER_EPOCH
    epochs = np.arange(training.NAN_EPOCHS)
    for backend in OTHER_BACKENDS + ("tensorflow",):
        series = logs.series(backend, "nonfinite", "training")
        gate = series.names.index("gate/w")
        others = [i for i in range(len(series.names)) if i != gate]
        np.testing.assert_array_equal(
            series.stat("nan_count")[:, gate], (epochs >= nan_epoch) * 1.0)
        np.testing.assert_array_equal(
            series.stat("first_nonfinite_step")[:, gate],
            np.where(epochs >= nan_epoch, training.NAN_STEP, np.nan))
        assert np.all(series.stat("nan_count")[:, others] == 0)
        assert np.all(np.isnan(series.stat("first_nonfinite_step")[:, others]))
        assert np.all(np.isfinite(series.stat("l2")[:, others]))


def test_nonfinite_step_records_the_same_largest_element(logs, backend):
    got, want = both(logs, backend, "nonfinite", "training")
    for step, table in want.step_tables.items():
        np.testing.assert_array_equal(got.step_tables[step][:, 1], table[:, 1])
    np.testing.assert_array_equal(got.scalar("step_max_abs_max"),
                                  want.scalar("step_max_abs_max"))


# -- an independent reference -------------------------------------------------


@pytest.fixture(scope="module")
def reference(trainings):
    with np.load(trainings["jax"] / "reference.npz") as arrays:
        return {key: arrays[key] for key in arrays.files}


@pytest.mark.parametrize("source", ["training", "probe"])
def test_statistics_equal_a_plain_jax_grad_loop(logs, reference, source):
    """The JAX run's figures equal numpy's from a clone trained with
    `jax.grad` of its stateless call and SGD by hand."""
    series = logs.series("jax", "recurrent", source)
    names = reference["names"].tolist()
    assert series.names == names
    epochs = range(training.RNN_EPOCHS)
    for i, name in enumerate(names):
        weights = [reference[f"weights/{e}/{i}"].astype(np.float64)
                   for e in epochs]
        if source == "training":
            steps = [[reference[f"step/{e}/{s}/{i}"].astype(np.float64)
                      for s in range(training.RNN_STEPS_PER_EPOCH)]
                     for e in epochs]
            wanted = expected_stats([sum(epoch) for epoch in steps], steps,
                                    weights)
        else:
            wanted = expected_stats(
                [reference[f"probe/{e}/{i}"].astype(np.float64)
                 for e in epochs], weights=weights)
        for e, want in enumerate(wanted):
            for key, value in want.items():
                if key.startswith("_"):
                    continue
                got = series.stat(key)[e, i]
                assert got == pytest.approx(
                    value, rel=REFERENCE_RTOL, abs=REFERENCE_ATOL,
                    nan_ok=True), (source, name, e, key)


# -- saving -------------------------------------------------------------------


def weight_datasets(source):
    """``{path: (shape, dtype)}`` of every dataset of a weights file."""
    found = {}
    with h5py.File(source, "r") as f:
        f.visititems(lambda name, item: found.__setitem__(
            name, (item.shape, item.dtype.str))
            if isinstance(item, h5py.Dataset) else None)
    return found


def without_object_ids(config):
    """A Keras config without its ``shared_object_id``s (the ids of this
    process's objects)."""
    if isinstance(config, dict):
        return {key: without_object_ids(value) for key, value in config.items()
                if key != "shared_object_id"}
    if isinstance(config, list):
        return [without_object_ids(value) for value in config]
    return config


def test_saving_is_unaffected_by_the_callback(trainings, tmp_path):
    directory = trainings["jax"] / "saving"
    with np.load(directory / "arrays.npz") as arrays:
        arrays = {key: arrays[key] for key in arrays.files}
    trained = sorted(k.split("/", 1)[1] for k in arrays
                     if k.startswith("trained/"))
    # the same variables as the model trained without the callback: no
    # accumulator among the optimizer's or the model's
    for name in ("loaded", "plain"):
        assert sorted(k.split("/", 1)[1] for k in arrays
                      if k.startswith(f"{name}/")) == trained
    for key in trained:
        # the .keras file reloads the trained model exactly
        np.testing.assert_array_equal(arrays[f"loaded/{key}"],
                                      arrays[f"trained/{key}"], err_msg=key)
        # and training went as without the callback
        np.testing.assert_allclose(arrays[f"plain/{key}"],
                                   arrays[f"trained/{key}"], rtol=1e-6,
                                   atol=1e-7, err_msg=key)
    assert (weight_datasets(directory / "with_callback.weights.h5")
            == weight_datasets(directory / "without_callback.weights.h5"))
    archives = {}
    for name in ("with_callback", "without_callback"):
        with zipfile.ZipFile(directory / f"{name}.keras") as archive:
            archive.extractall(tmp_path / name)
            archives[name] = sorted(archive.namelist())
    assert archives["with_callback"] == archives["without_callback"]
    configs = [without_object_ids(json.loads(
        (tmp_path / name / "config.json").read_text())) for name in archives]
    assert configs[0] == configs[1]
    assert (weight_datasets(tmp_path / "with_callback" / "model.weights.h5")
            == weight_datasets(
                tmp_path / "without_callback" / "model.weights.h5"))


# -- what reaches the host -----------------------------------------------------


def host_bytes(trainings, backend):
    with open(trainings[backend] / "host_bytes.json") as f:
        return json.load(f)


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_host_bytes_per_window_do_not_grow_with_the_parameters(trainings,
                                                                backend):
    moved = host_bytes(trainings, backend)
    narrow, wide = moved["narrow"], moved["wide"]
    assert wide["params"] >= 10 * narrow["params"]
    assert wide["variables"] == narrow["variables"]
    assert len(narrow["per_window"]) == training.HOST_EPOCHS
    assert len(set(narrow["per_window"])) == 1, narrow["per_window"]
    assert wide["per_window"] == narrow["per_window"]
    # less than one byte per parameter of the wide model
    assert narrow["per_window"][0] < wide["params"]


def test_host_bytes_per_window_are_the_same_on_every_backend(trainings):
    want = host_bytes(trainings, "tensorflow")
    for backend in ("jax", "torch"):
        assert host_bytes(trainings, backend) == want, backend


# -- compilation --------------------------------------------------------------


def test_train_step_is_compiled_once_per_fit(trainings):
    with open(trainings["jax"] / "compiles.json") as f:
        compiles = json.load(f)
    assert compiles["mlp_without_callback"]["jit(train_step)"] == 1
    for scenario in training.SCENARIOS:
        assert compiles[scenario].get("jit(step)") == 1, (
            scenario, compiles[scenario])


def test_window_end_is_one_program_per_model_for_its_small_variables(
        trainings):
    """The JAX kernel reduces every exact group of a model in one program
    (`exact_step`), the weights' norms in another: each compiled once per
    scenario, shared by its training and probe sources and its windows."""
    with open(trainings["jax"] / "compiles.json") as f:
        compiles = json.load(f)
    for scenario in training.SCENARIOS:
        assert compiles[scenario].get("jit(exact_step)") == 1, (
            scenario, compiles[scenario])
        assert compiles[scenario].get("jit(weight_l2s)") == 1, (
            scenario, compiles[scenario])


# -- unsupported backends -----------------------------------------------------


def test_numpy_backend_is_rejected_at_construction():
    code = "\n".join([
        "import keras",
        "from tb_gradients import GradientTensorBoard",
        "assert keras.backend.backend() == 'numpy'",
        "try:",
        "    GradientTensorBoard()",
        "except ValueError as error:",
        "    print('ValueError:', error)",
    ])
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=backend_env("numpy"),
        capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    message = completed.stdout
    assert message.startswith("ValueError:"), message
    assert "backend='numpy'" in message
    assert "('tensorflow', 'jax', 'torch')" in message
