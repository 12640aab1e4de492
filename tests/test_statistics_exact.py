"""Every statistic in the event files equals an independent recomputation.

A model is trained with `fit` and `GradientTensorBoard`; a clone with the same
initial weights is trained by a plain GradientTape loop with the same SGD rule
and batches. The expected values below are written out from the definitions
in docs/STATISTICS.md with numpy, not with `tb_gradients.stats`.
"""

import keras
import numpy as np
import pytest

from tb_gradients import GradientTensorBoard
from tb_gradients import metadata
from tests import eventfiles
from tests import reference

EPOCHS = 4
BATCH = 32
SAMPLES = 160
LR = 0.05


def make_data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(SAMPLES, 6)).astype("float32")
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype("int64") + (x[:, 3] > 1)
    return x, y.astype("int64")


def make_model():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(5, activation="tanh", name="hidden"),
        keras.layers.Dense(3, activation="softmax", name="out"),
    ])
    return model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    keras.utils.clear_session()
    x, y = make_data()
    probe = (x[:40], y[:40])
    model = make_model()
    twin = reference.clone_with_weights(model)
    model.compile(keras.optimizers.SGD(LR),
                  keras.losses.SparseCategoricalCrossentropy())
    logdir = tmp_path_factory.mktemp("exact")
    callback = GradientTensorBoard(
        log_dir=str(logdir), source="both", probe_data=probe,
        heatmap_encoding="float32", histogram_buckets=7)
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=[callback])

    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    steps, probes, weights = [], [], []
    for _ in range(EPOCHS):
        steps += reference.tape_training(twin, loss_fn, x, y, BATCH, 1, LR)
        probes.append(reference.probe_gradient(twin, loss_fn, *probe))
        weights.append([v.numpy().astype(np.float64)
                        for v in twin.trainable_variables])
    names = [v.path.split("/", 1)[1] for v in model.trainable_variables]
    return {"series": eventfiles.load(logdir / "train"), "steps": steps,
            "probes": probes, "weights": weights, "names": names, "model": model, "twin": twin,
            "logdir": logdir}


def expected_stats(gradients, step_grads=None, weights=None):
    """Per-epoch dicts of expected statistics of one variable (``weights``:
    its values at each epoch's end)."""
    out = []
    cumulative = np.zeros_like(gradients[0])
    cumulative_abs = np.zeros_like(gradients[0])
    for e, g in enumerate(gradients):
        cumulative = cumulative + g
        cumulative_abs = cumulative_abs + np.abs(g)
        size = g.size
        dissolving = cumulative_abs - np.abs(cumulative)
        row = {
            "size": size,
            "norm": np.abs(g).sum() / size,
            "norm_accumulated": np.abs(cumulative).sum() / size,
            "accumulated_norm": sum(np.abs(k).sum() / size
                                    for k in gradients[:e + 1]),
            "l2": np.sqrt((g ** 2).sum()),
            "l2_accumulated": np.sqrt((cumulative ** 2).sum()),
            "mean": g.mean(),
            "std": g.std(),
            "mean_abs": np.abs(g).mean(),
            "max_abs": np.abs(g).max(),
            "max_abs_index": float(np.argmax(np.abs(g).ravel())),
            "accumulated_max_abs": np.abs(cumulative).max(),
            "dissolving_max": dissolving.max(),
            "nan_count": 0,
            "inf_count": 0,
            # output units = last axis; a unit is dead when all of its
            # elements of G are exactly 0
            "dead_units": np.mean(np.all(g.reshape(-1, g.shape[-1]) == 0,
                                         axis=0)),
            # no step of this run had a non-finite gradient
            "first_nonfinite_step": np.nan,
            "_G": g, "_C": cumulative.copy(), "_D": dissolving,
        }
        row["dissolving_norm"] = row["accumulated_norm"] - row["norm_accumulated"]
        if weights is not None:
            row["weight_l2"] = np.sqrt((weights[e] ** 2).sum())
        if step_grads is not None:
            per_step = step_grads[e]
            n = len(per_step)
            row["steps"] = n
            row["within_epoch_dissolving_norm"] = (
                sum(np.abs(s).sum() for s in per_step) - np.abs(g).sum()) / size
            mean = g / n
            var = sum((s - mean) ** 2 for s in per_step) / (n - 1)
            row["noise_scale"] = var.sum() / (mean ** 2).sum()
            row["_trace"], row["_signal"] = var.sum(), (mean ** 2).sum()
        out.append(row)
    return out


def training_gradients(run, index):
    return [sum(step[index] for step in epoch) for epoch in run["steps"]], [
        [step[index] for step in epoch] for epoch in run["steps"]]


RTOL = 2e-4


@pytest.mark.parametrize("index", range(4))
def test_training_variable_statistics(run, index):
    gradients, step_grads = training_gradients(run, index)
    name = run["names"][index]
    weights = [w[index] for w in run["weights"]]
    wanted = expected_stats(gradients, step_grads, weights)
    assert set(metadata.VARIABLE_STAT_NAMES) <= set(wanted[0])
    for epoch, want in enumerate(wanted):
        got = eventfiles.variable_stats(run["series"], "training", name, epoch)
        for key, value in want.items():
            if key.startswith("_"):
                continue
            assert got[key] == pytest.approx(value, rel=RTOL, abs=1e-6,
                                             nan_ok=True), (name, epoch, key)


@pytest.mark.parametrize("index", range(4))
def test_probe_variable_statistics(run, index):
    gradients = [p[index] for p in run["probes"]]
    name = run["names"][index]
    weights = [w[index] for w in run["weights"]]
    for epoch, want in enumerate(expected_stats(gradients, weights=weights)):
        got = eventfiles.variable_stats(run["series"], "probe", name, epoch)
        for key, value in want.items():
            if key.startswith("_"):
                continue
            assert got[key] == pytest.approx(value, rel=RTOL, abs=1e-6,
                                             nan_ok=True), (name, epoch, key)
        assert np.isnan(got["noise_scale"])


def test_global_scalars(run):
    per_var = [expected_stats(*training_gradients(run, i)) for i in range(4)]
    for epoch in range(EPOCHS):
        rows = [v[epoch] for v in per_var]
        want = {
            "norm": sum(r["norm"] for r in rows),
            "norm_accumulated": sum(r["norm_accumulated"] for r in rows),
            "accumulated_norm": sum(r["accumulated_norm"] for r in rows),
            "dissolving_norm": sum(r["dissolving_norm"] for r in rows),
            "l2": np.sqrt(sum(r["l2"] ** 2 for r in rows)),
            "max_abs": max(r["max_abs"] for r in rows),
            "noise_scale": sum(r["_trace"] for r in rows)
            / sum(r["_signal"] for r in rows),
            "steps": SAMPLES // BATCH,
            "skipped_steps": 0,
            "nan_count": 0,
        }
        for key, value in want.items():
            got = eventfiles.scalar(run["series"], "training", key, epoch)
            assert got == pytest.approx(value, rel=RTOL, abs=1e-6), (epoch, key)
    # the seed's identity: accumulated norm is the running sum of the norms
    norms = [eventfiles.scalar(run["series"], "training", "norm", e)
             for e in range(EPOCHS)]
    acc = [eventfiles.scalar(run["series"], "training", "accumulated_norm", e)
           for e in range(EPOCHS)]
    assert acc == pytest.approx(np.cumsum(norms), rel=1e-5)


def test_per_step_table(run):
    for epoch in range(EPOCHS):
        table = run["series"][metadata.steps_tag("training")][epoch]
        steps = run["steps"][epoch]
        assert table.shape == (len(steps), 2)
        want_l2 = [np.sqrt(sum((g ** 2).sum() for g in s)) for s in steps]
        want_max = [max(np.abs(g).max() for g in s) for s in steps]
        np.testing.assert_allclose(table[:, 0], want_l2, rtol=RTOL)
        np.testing.assert_allclose(table[:, 1], want_max, rtol=RTOL)
        assert eventfiles.scalar(run["series"], "training", "step_l2_max",
                                 epoch) == pytest.approx(max(want_l2), rel=RTOL)


def test_heatmaps_are_the_elementwise_quantities(run):
    gradients, step_grads = training_gradients(run, 0)  # hidden/kernel (6, 5)
    name = run["names"][0]
    for epoch, want in enumerate(expected_stats(gradients, step_grads)):
        heat = run["series"][metadata.heatmap_tag("training", name)][epoch]
        assert heat.shape == (4, 6, 5) and heat.dtype == np.float32
        np.testing.assert_allclose(heat[0], np.abs(want["_G"]), rtol=RTOL,
                                   atol=1e-7)
        np.testing.assert_allclose(heat[1], np.abs(want["_G"]), rtol=RTOL,
                                   atol=1e-7)
        np.testing.assert_allclose(heat[2], np.abs(want["_C"]), rtol=RTOL,
                                   atol=1e-7)
        np.testing.assert_allclose(heat[3], want["_D"], rtol=1e-3, atol=1e-6)


def test_histograms_in_the_histograms_plugin_format(run):
    gradients, _ = training_gradients(run, 0)
    name = run["names"][0]
    tag = metadata.histogram_tag("training", name)
    meta = run["series"]["__metadata__"][tag]
    assert meta.plugin_data.plugin_name == "histograms"
    for epoch, g in enumerate(gradients):
        buckets = run["series"][tag][epoch]
        assert buckets.shape == (7, 3)
        assert buckets[:, 2].sum() == g.size
        assert buckets[0, 0] == pytest.approx(g.min(), rel=1e-4)
        assert buckets[-1, 1] == pytest.approx(g.max(), rel=1e-4)
        # the reference differs from the logged gradient by float rounding:
        # clip it into the logged range so the extreme elements count.
        low, high = buckets[0, 0], buckets[-1, 1]
        counts, _ = np.histogram(np.clip(g, low, high), bins=7,
                                 range=(low, high))
        np.testing.assert_array_equal(buckets[:, 2], counts)


def test_metadata_is_versioned_json(run):
    name = run["names"][2]
    meta = run["series"]["__metadata__"][
        metadata.variable_stats_tag("training", name)]
    assert meta.plugin_data.plugin_name == metadata.PLUGIN_NAME
    content = metadata.parse_plugin_metadata(meta.plugin_data.content)
    assert content["version"] == metadata.FORMAT_VERSION
    assert content["variable"] == name
    assert content["shape"] == [5, 3]
    assert content["stats"] == list(metadata.VARIABLE_STAT_NAMES)


def test_weights_match_the_reference_loop(run):
    """Sanity check of the reference itself: the trajectories agree."""
    for a, b in zip(run["model"].get_weights(), run["twin"].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_global_scalars_read_by_tbparse(run, tmp_path_factory):
    """The figures users plot with pandas come back through tbparse too."""
    from tbparse import SummaryReader

    logdir = run["logdir"]
    # TF2 stores scalars as tensors (Keras's epoch_loss too): tbparse's
    # `tensors` frame is where users find them.
    frame = SummaryReader(str(logdir / "train")).tensors
    norms = frame[frame["tag"] == "gradients/training/norm"].sort_values(
        "step")
    assert norms["step"].tolist() == list(range(EPOCHS))
    want = [eventfiles.scalar(run["series"], "training", "norm", e)
            for e in range(EPOCHS)]
    np.testing.assert_allclose(norms["value"].to_numpy(dtype=float), want,
                               rtol=1e-6)
    assert "gradients/probe/norm" in set(frame["tag"])
