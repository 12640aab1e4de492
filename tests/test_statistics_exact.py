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
from tb_gradients.format import heatmap
from tb_gradients.format import metadata
from tb_gradients.format import variable_stats as variable_stats_format

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


def make_repeated_model():
    """Three hidden layers of one shape: their kernels and biases form
    stacked groups, whose gradients the TensorFlow hook stacks and reduces
    together in the train step."""
    keras.utils.set_random_seed(3)
    return keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(5, activation="tanh", name="first"),
        *[keras.layers.Dense(5, activation="tanh", name=f"repeated_{i}")
          for i in range(3)],
        keras.layers.Dense(3, activation="softmax", name="out"),
    ])


def train(logdir, learning_rate=LR, build=make_model, **callback_kwargs):
    """`fit` with the callback and the same training by a tape loop."""
    keras.utils.clear_session()
    x, y = make_data()
    probe = (x[:40], y[:40])
    model = build()
    twin = reference.clone_with_weights(model)
    model.compile(keras.optimizers.SGD(learning_rate),
                  keras.losses.SparseCategoricalCrossentropy())
    if callback_kwargs.get("source") in ("probe", "both"):
        callback_kwargs["probe_data"] = probe
    callback = GradientTensorBoard(log_dir=str(logdir), **callback_kwargs)
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=[callback])

    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    steps, probes, weights = [], [], []
    for _ in range(EPOCHS):
        steps += reference.tape_training(twin, loss_fn, x, y, BATCH, 1,
                                         learning_rate)
        probes.append(reference.probe_gradient(twin, loss_fn, *probe))
        weights.append([v.numpy().astype(np.float64)
                        for v in twin.trainable_variables])
    names = [v.path.split("/", 1)[1] for v in model.trainable_variables]
    return {"series": eventfiles.load(logdir / "train"), "steps": steps,
            "probes": probes, "weights": weights, "names": names, "model": model, "twin": twin,
            "logdir": logdir}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Both sources, float32 heatmaps at full resolution (1×1 blocks)."""
    return train(tmp_path_factory.mktemp("exact"), source="both",
                 heatmap_encoding="float32", histogram_buckets=7)


# Every variable of `make_model` but out/bias (3 elements) is larger than
# this: its heatmap pools blocks of several elements with uneven last blocks
# (hidden/kernel (6, 5) in 3×3 blocks, out/kernel (5, 3) in 3×2,
# hidden/bias in 1×2), and takes the float32 reduction path of the window
# end.
POOLED_CELLS = 4
# A step large enough that the gradients change sign between epochs: the
# dissolving channel holds more than round-off.
POOLED_LR = 0.5


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    """The default uint8 heatmaps, pooled into blocks larger than 1×1."""
    return train(tmp_path_factory.mktemp("pooled"), POOLED_LR,
                 source="training", heatmap_cells=POOLED_CELLS)


def expected_stats(gradients, step_grads=None, weights=None, block=(1, 1)):
    """Per-epoch dicts of expected statistics of one variable (``weights``:
    its values at each epoch's end; ``block``: its heatmap's pooling block,
    over which `dissolving_max` is the largest block mean of ``D``)."""
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
            "dissolving_max": reference.pooled_blocks(dissolving, block, np.mean).max(),
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


def assert_recorded(series, source, name, wanted):
    """Every expected statistic of one variable (``expected_stats``) equals
    the recorded one at each epoch; returns the recorded dicts."""
    recorded = []
    for epoch, want in enumerate(wanted):
        got = eventfiles.variable_stats(series, source, name, epoch)
        for key, value in want.items():
            if key.startswith("_"):
                continue
            assert got[key] == pytest.approx(value, rel=RTOL, abs=1e-6,
                                             nan_ok=True), (name, epoch, key)
        recorded.append(got)
    return recorded


@pytest.mark.parametrize("index", range(4))
def test_training_variable_statistics(run, index):
    gradients, step_grads = training_gradients(run, index)
    name = run["names"][index]
    weights = [w[index] for w in run["weights"]]
    wanted = expected_stats(gradients, step_grads, weights)
    assert set(variable_stats_format.VARIABLE_STAT_NAMES) <= set(wanted[0])
    assert_recorded(run["series"], "training", name, wanted)


@pytest.mark.parametrize("index", range(4))
def test_probe_variable_statistics(run, index):
    gradients = [p[index] for p in run["probes"]]
    name = run["names"][index]
    weights = [w[index] for w in run["weights"]]
    for got in assert_recorded(run["series"], "probe", name,
                               expected_stats(gradients, weights=weights)):
        assert np.isnan(got["noise_scale"])


def test_stacked_groups_of_small_variables(tmp_path):
    """Variables of one shape (the hook stacks their step gradients, the
    window end reduces them as one group): every statistic of every
    variable equals the tape loop's."""
    run = train(tmp_path, build=make_repeated_model)
    for index, name in enumerate(run["names"]):
        gradients, step_grads = training_gradients(run, index)
        weights = [w[index] for w in run["weights"]]
        assert_recorded(run["series"], "training", name,
                        expected_stats(gradients, step_grads, weights))


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
            "l2_accumulated": np.sqrt(sum(r["l2_accumulated"] ** 2
                                          for r in rows)),
            "within_epoch_dissolving_norm": sum(
                r["within_epoch_dissolving_norm"] for r in rows),
            "max_abs": max(r["max_abs"] for r in rows),
            "step_max_abs_max": max(np.abs(g).max() for step in
                                    run["steps"][epoch] for g in step),
            "noise_scale": sum(r["_trace"] for r in rows)
            / sum(r["_signal"] for r in rows),
            "steps": SAMPLES // BATCH,
            "skipped_steps": 0,
            "nan_count": 0,
            "inf_count": 0,
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


# docs/FORMAT.md, uint8 encoding: for a channel whose scale is s, code q in
# 1..253 stands for s·10^((q − 1)/252·6 − 6), 0 for zero or anything below
# s·10^-6, 254 for +Inf and 255 for NaN. Rounding to the nearest code moves
# a value by at most half a code's width in log10: 6/252/2 = 0.0119 decades,
# a factor of 10^±0.0119 (±2.8 %).
DECADES, LEVELS = 6, 253
HALF_CODE = DECADES / (LEVELS - 1) / 2


def log10_margin(value, uncertainty):
    """How far in log10 a reference ``value`` known to ±``uncertainty`` may
    be from the recorded one."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(1 + np.asarray(uncertainty) / np.asarray(value))


def assert_log_uint8(codes, values, uncertainty, scale, scale_uncertainty,
                     what):
    """``codes`` encode the reference ``values`` (known to ±``uncertainty``,
    elementwise) on the scale ``scale`` (±``scale_uncertainty``) within the
    quantisation bound. Returns how many cells could be checked: a value
    not much larger than its uncertainty (a cancelling sum's round-off)
    tells nothing about its code."""
    codes = np.asarray(codes).astype(np.int64)
    values = np.asarray(values, np.float64)
    assert codes.shape == values.shape, what
    assert (codes <= LEVELS).all(), f"{what}: a finite value coded as non-finite"
    if scale <= 10 * scale_uncertainty:  # the whole channel is round-off
        return 0
    decoded = scale * 10.0 ** ((codes - 1) / (LEVELS - 1) * DECADES - DECADES)
    tolerance = (HALF_CODE + log10_margin(scale, scale_uncertainty)
                 + log10_margin(values, uncertainty))
    checkable = values > 10 * np.asarray(uncertainty)
    with np.errstate(divide="ignore"):
        error = np.abs(np.log10(decoded) - np.log10(values))
    visible = codes > 0
    wrong = checkable & visible & (error > tolerance)
    lowest = scale * 10.0 ** -DECADES
    wrong |= checkable & ~visible & (values > lowest * 10 ** tolerance)
    assert not wrong.any(), (
        f"{what} at {np.argwhere(wrong).tolist()}: codes {codes[wrong]} "
        f"decode to {decoded[wrong]}, expected {values[wrong]} (scale {scale})")
    return int(checkable.sum())


def heatmap_content(run, name):
    tag = metadata.heatmap_tag("training", name)
    return metadata.parse_plugin_metadata(
        run["series"]["__metadata__"][tag].plugin_data.content)


@pytest.mark.parametrize("index", range(4))
def test_pooled_variable_statistics(pooled, index):
    """Every statistic on the float32 path, `dissolving_max` over blocks."""
    gradients, step_grads = training_gradients(pooled, index)
    name = pooled["names"][index]
    block = tuple(heatmap_content(pooled, name)["block"])
    weights = [w[index] for w in pooled["weights"]]
    assert_recorded(pooled["series"], "training", name,
                    expected_stats(gradients, step_grads, weights, block))


@pytest.mark.parametrize("index", range(4))
def test_pooled_uint8_heatmaps_are_the_block_quantities(pooled, index):
    """Each channel is its block reduction of the reference G, C and D,
    log-coded on its scale, within the quantisation bound (blocks larger
    than 1×1 with uneven last blocks: mean and max |G| differ)."""
    gradients, step_grads = training_gradients(pooled, index)
    name = pooled["names"][index]
    content = heatmap_content(pooled, name)
    assert content["encoding"] == "uint8" and content["decades"] == DECADES
    block = tuple(content["block"])
    rows, cols = reference.matrix_view(gradients[0]).shape
    assert content["view_shape"] == [rows, cols]
    if rows * cols > POOLED_CELLS:
        assert block[0] * block[1] > 1 and (rows % block[0] or cols % block[1])
    grid = (-(-rows // block[0]), -(-cols // block[1]))
    assert grid[0] * grid[1] <= POOLED_CELLS
    checked = np.zeros(4, int)
    for epoch, want in enumerate(expected_stats(gradients, step_grads,
                                                block=block)):
        heat = pooled["series"][metadata.heatmap_tag("training", name)][epoch]
        assert heat.dtype == np.uint8 and heat.shape == (4,) + grid
        mean_abs_a = reference.pooled_blocks(sum(np.abs(g) for g in
                                       gradients[:epoch + 1]), block, np.mean)
        mean_abs_g = reference.pooled_blocks(np.abs(want["_G"]), block, np.mean)
        max_abs_g = reference.pooled_blocks(np.abs(want["_G"]), block, np.max)
        # C and D cancel over the windows: their round-off is relative to
        # A = Σ_k |G_k| (tests/series_compare.py)
        channels = [
            (mean_abs_g, RTOL * mean_abs_g, want["max_abs"],
             RTOL * want["max_abs"]),
            (max_abs_g, RTOL * max_abs_g, want["max_abs"],
             RTOL * want["max_abs"]),
            (reference.pooled_blocks(np.abs(want["_C"]), block, np.mean),
             RTOL * mean_abs_a, want["accumulated_max_abs"],
             RTOL * mean_abs_a.max()),
            (reference.pooled_blocks(want["_D"], block, np.mean), RTOL * mean_abs_a,
             want["dissolving_max"], RTOL * mean_abs_a.max()),
        ]
        for channel, (values, error, scale, scale_error) in enumerate(
                channels):
            checked[channel] += assert_log_uint8(
                heat[channel], values, error, scale, scale_error,
                f"{name} epoch {epoch} {heatmap.HEATMAP_CHANNELS[channel]}")
    # every channel was compared on most of its cells
    # Most cells were compared. D is 0 in the first window and holds only
    # round-off where a gradient kept its sign (out/bias keeps it): half of
    # the later windows' cells of each pooled variable is required.
    cells = grid[0] * grid[1]
    assert (checked[:3] >= 0.75 * EPOCHS * cells).all(), checked
    if rows * cols > POOLED_CELLS:
        assert checked[3] >= (EPOCHS - 1) * cells / 2, checked


def test_inf_elements_are_counted_as_inf_not_nan(tmp_path):
    """A gradient with ±Inf elements and no NaN: each element is counted as
    what it is, per variable and over the model, and the uint8 heatmap
    marks it as Inf.

    Inputs of 1e20 in the first feature overflow float32 in the kernel's
    first row (x·δ ≈ 1e40, of both signs); its second row and the bias stay
    finite (≈ 1e19).
    """
    keras.utils.clear_session()
    keras.utils.set_random_seed(5)
    x = np.array([[1e20, 1.0], [1e20, -2.0], [0.0, 0.5]], np.float32)
    y = np.zeros((3, 3), np.float32)
    model = keras.Sequential([keras.Input((2,)),
                              keras.layers.Dense(3, name="dense")])
    twin = reference.clone_with_weights(model)
    model.compile(keras.optimizers.SGD(LR), "mse")
    model.fit(x, y, batch_size=3, epochs=1, shuffle=False, verbose=0,
              callbacks=[GradientTensorBoard(str(tmp_path))])
    loss_fn = keras.losses.MeanSquaredError(reduction=None)
    (step,), = reference.tape_training(twin, loss_fn, x, y, 3, 1, LR)
    series = eventfiles.load(tmp_path / "train")
    totals = {"nan_count": 0, "inf_count": 0}
    for name, g in zip(["dense/kernel", "dense/bias"], step):
        want = {"nan_count": np.isnan(g).sum(), "inf_count": np.isinf(g).sum()}
        got = eventfiles.variable_stats(series, "training", name, 0)
        for key, value in want.items():
            assert got[key] == value, (name, key, got[key], value)
            totals[key] += value
        heat = series[metadata.heatmap_tag("training", name)][0]
        view = reference.matrix_view(g)
        np.testing.assert_array_equal(heat[0] == 255, np.isnan(view))
        np.testing.assert_array_equal(heat[0] == 254, np.isinf(view))
    assert totals == {"nan_count": 0, "inf_count": 3}, totals
    for key, value in totals.items():
        assert eventfiles.scalar(series, "training", key, 0) == value, key


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
    assert content["stats"] == list(variable_stats_format.VARIABLE_STAT_NAMES)


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
