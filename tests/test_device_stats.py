"""The device pieces of tb_gradients.device_stats against numpy computations."""

import numpy as np
import pytest
import tensorflow as tf

from tb_gradients.format import heatmap
from tb_gradients.format import histogram
from tb_gradients.window.kernels import tensorflow as tf_kernel


def _pooled(values, block, reducer, view=None):
    """Pools ``values``: one view, or views of shape ``view`` stacked."""
    view = view or values.shape
    geometry = tf.constant(list(view) + list(block) + [0], tf.int32)
    return tf_kernel.pool(tf.constant(values), geometry, reducer).numpy()


def test_pool_mean_and_max_with_ragged_blocks():
    view = np.arange(35, dtype=np.float32).reshape(5, 7)
    sums = _pooled(view, (2, 3), tf.math.segment_sum)
    maxima = _pooled(view, (2, 3), tf.math.segment_max)
    counts = tf_kernel.block_counts(
        tf.constant([5, 7, 2, 3, 0], tf.int32)).numpy()
    mean = sums / counts
    assert mean.shape == (3, 3)
    assert mean[0, 0] == view[0:2, 0:3].mean()
    assert mean[2, 2] == view[4:5, 6:7].mean()
    assert mean[1, 2] == view[2:4, 6:7].mean()
    assert maxima[2, 1] == view[4:5, 3:6].max()


def test_pool_keeps_stacked_views_apart():
    views = np.arange(2 * 5 * 4, dtype=np.float32).reshape(10, 4)
    sums = _pooled(views, (2, 2), tf.math.segment_sum, view=(5, 4))
    assert sums.shape == (6, 2)
    # second view's first block: rows 5..6, cols 0..1
    assert sums[3, 0] == views[5:7, 0:2].sum()
    assert sums[2, 1] == views[4:5, 2:4].sum()


def test_log_uint8_round_trip_error_bound():
    scale = 3.7e-3
    values = scale * np.logspace(-5.99, 0, 2000)
    codes = tf_kernel.encode_log_uint8(tf.constant(values), scale).numpy()
    decoded = heatmap.decode_log_uint8(codes, scale)
    relative = np.abs(decoded / values - 1)
    bound = 10 ** (heatmap.HEATMAP_DECADES / 252 / 2) - 1
    assert relative.max() <= bound + 1e-12
    assert bound < 0.03


def test_log_uint8_special_codes():
    codes = tf_kernel.encode_log_uint8(
        tf.constant([0.0, 1e-12, 1.0, np.inf, np.nan], tf.float64),
        1.0).numpy()
    assert codes.tolist() == [0, 0, 253, 254, 255]
    decoded = heatmap.decode_log_uint8(codes, 1.0)
    assert decoded[0] == 0 and decoded[2] == 1.0
    assert np.isposinf(decoded[3]) and np.isnan(decoded[4])
    # no usable scale: only the special codes survive
    codes = tf_kernel.encode_log_uint8(
        tf.constant([1.0, np.nan], tf.float64), 0.0).numpy()
    assert codes.tolist() == [0, 255]


def _histogram(values, buckets):
    values = tf.constant(values)[None]
    low, high = tf.reduce_min(values, 1), tf.reduce_max(values, 1)
    counts = tf_kernel.histogram_counts(values, low, high, buckets)
    return histogram.histogram_rows(low[0].numpy(), high[0].numpy(),
                                       counts[0].numpy())


def test_histogram_counts_equal_numpy():
    rng = np.random.default_rng(1)
    values = rng.normal(size=1000).astype(np.float32)
    rows = _histogram(values, 9)
    want, edges = np.histogram(values, bins=9)
    np.testing.assert_array_equal(rows[:, 2], want)
    np.testing.assert_allclose(rows[:, 0], edges[:-1], rtol=1e-6)
    assert rows[-1, 1] == pytest.approx(values.max(), rel=1e-7)


def test_histogram_rows_of_a_stack_are_apart():
    values = np.array([[0.0, 1.0, 2.0, 3.0], [10.0, 10.0, 10.0, 11.0]],
                      np.float32)
    tensor = tf.constant(values)
    counts = tf_kernel.histogram_counts(
        tensor, tf.reduce_min(tensor, 1), tf.reduce_max(tensor, 1), 2).numpy()
    assert counts.tolist() == [[2, 2], [3, 1]]


def test_histogram_constant_and_empty():
    constant = _histogram(np.full(10, 2.0, np.float32), 4)
    assert constant.shape == (4, 3) and constant[:, 2].sum() == 10
    assert constant[0, 0] == 1.5 and constant[0, 1] == 2.5
    assert histogram.histogram_rows(np.inf, -np.inf,
                                       np.zeros(4)).shape == (0, 3)


def test_histogram_tables_are_histogram_rows():
    """The edges of many variables at once are each variable's
    `np.linspace` edges bit for bit, and the special rows (empty,
    constant, non-finite bounds, a step below the smallest float) are
    `histogram_rows`'s."""
    rng = np.random.default_rng(2)
    low = rng.normal(size=40) * rng.choice([1e-30, 1e-3, 1.0, 1e20], 40)
    high = low + np.abs(rng.normal(size=40)) * rng.choice(
        [0.0, 1e-320, 1e-5, 1.0, 1e30], 40)
    low[3], high[5] = np.nan, np.inf
    counts = rng.integers(0, 5, (40, 6))
    counts[7] = 0
    for i, table in enumerate(histogram.histogram_tables(low, high, counts)):
        want = histogram.histogram_rows(low[i], high[i], counts[i])
        np.testing.assert_array_equal(table, want)
        if want.shape[0] and low[i] != high[i]:
            np.testing.assert_array_equal(
                table[:, 0], np.linspace(low[i], high[i], 7)[:-1])


def test_tensor_protos_are_tensorboards():
    """The writer's tensors are the messages `make_tensor_proto` makes."""
    from tensorboard.util import tensor_util

    from tb_gradients import writer

    for value in (np.arange(6, dtype=np.float64).reshape(2, 3),
                  np.arange(4, dtype=np.float32), np.ones((2, 2, 2), np.uint8),
                  np.array([3, -1], np.int32), np.array([5], np.int64),
                  np.float32(2.5), np.zeros((0, 3)),
                  np.array(["a", "b"], object)):
        value = np.asarray(value)
        assert (writer.tensor_proto(value).SerializeToString()
                == tensor_util.make_tensor_proto(value).SerializeToString()), (
                    value)


def _sum_float32(terms, compensated):
    total = tf.zeros(terms.shape[1:], tf.float32)
    compensation = tf.zeros(terms.shape[1:], tf.bfloat16)
    for term in terms:
        term = tf.constant(term)
        if compensated:
            total, compensation = tf_kernel.kahan_add(total, compensation,
                                                         term)
        else:
            total = total + term
    return total.numpy().astype(np.float64)


def test_kahan_accumulation_over_1000_windows_stays_float32_accurate():
    """A cancelling random walk with a small drift, as C sees it."""
    rng = np.random.default_rng(5)
    terms = (rng.normal(size=(1000, 512)) + 1e-3).astype(np.float32)
    exact = terms.astype(np.float64).sum(axis=0)
    scale = np.abs(terms.astype(np.float64)).sum(axis=0)
    naive = np.abs(_sum_float32(terms, False) - exact) / scale
    kahan = np.abs(_sum_float32(terms, True) - exact) / scale
    # float32's own resolution of the result, relative to Σ|G|
    representation = np.abs(exact.astype(np.float32) - exact) / scale
    assert kahan.max() <= representation.max() * 2 + 1e-12
    assert kahan.mean() < naive.mean() / 10


def test_kahan_keeps_nan_and_inf():
    total, compensation = tf_kernel.kahan_add(
        tf.constant([1.0, 1.0, 1.0]), tf.zeros([3], tf.bfloat16),
        tf.constant([np.nan, np.inf, 2.0], tf.float32))
    compensation = tf_kernel.finite_compensation(total, compensation)
    total, compensation = tf_kernel.kahan_add(
        total, compensation, tf.constant([1.0, 1.0, 1.0]))
    values = total.numpy()
    assert np.isnan(values[0]) and np.isposinf(values[1]) and values[2] == 4


def test_gate_step_splits_on_the_last_axis():
    gradient = np.concatenate([np.full((2, 3), k + 1.0) for k in range(4)],
                              axis=1).astype(np.float32)
    table, heatmap = tf_kernel.gate_step_function()(
        tf.constant(gradient), tf.constant(4, tf.int32),
        np.array([2, 3, 1, 1, 0], np.int32))
    table = table.numpy()
    assert table[:, 2].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert table[3, 0] == pytest.approx(np.sqrt(6 * 16))
    heatmap = heatmap.numpy().reshape(4, 2, 3)
    np.testing.assert_array_equal(heatmap[2], np.full((2, 3), 3.0))


def _expected(gradients, sizes_cells=None):
    """Statistics of a sequence of window gradients, from the definitions."""
    accumulated = np.zeros_like(gradients[0])
    norms = 0.0
    rows = []
    for g in gradients:
        finite = np.isfinite(g)
        values = g[finite]
        accumulated = accumulated + g
        norms += np.abs(values).sum() / g.size
        c = accumulated[np.isfinite(accumulated)]
        rows.append({
            "norm": np.abs(values).sum() / g.size,
            "l2": np.sqrt((values ** 2).sum()),
            "mean": values.mean(), "std": values.std(),
            "max_abs": np.abs(values).max(),
            "max_abs_index": float(np.argmax(np.where(finite, np.abs(g),
                                                      -1).ravel())),
            "norm_accumulated": np.abs(c).sum() / g.size,
            "accumulated_norm": norms,
            "accumulated_max_abs": np.abs(c).max(),
            "nan_count": float(np.isnan(g).sum()),
            "inf_count": float(np.isinf(g).sum()),
            # a unit (column) is dead when all its elements are exactly 0
            # (NaN is not 0)
            "dead_units": float(np.mean(np.all(g.reshape(-1, g.shape[-1])
                                               == 0, axis=0))),
        })
    return rows


@pytest.mark.parametrize("shape, count", [((7, 5), 3), ((300, 200), 2)])
def test_window_statistics_of_stacked_groups(shape, count):
    """Stacked variables (small: float64; pooled: float32) each equal numpy."""
    from tb_gradients.window import source as window
    rng = np.random.default_rng(3)
    variables = [tf.Variable(tf.zeros(shape)) for _ in range(count)]
    windows = window.SourceWindows("probe", variables, 1024, "float32", 8)
    assert windows.groups == [list(range(count))]
    history = [[] for _ in range(count)]
    for _ in range(3):
        gradients = [rng.normal(size=shape).astype(np.float32) * 1e-3
                     for _ in range(count)]
        gradients[0][:, :3] = 0.0  # three dead units in the first variable
        record = windows.end_window(windows.stack(gradients),
                                    probe_batches=2)
        for index, g in enumerate(gradients):
            history[index].append(g.astype(np.float64))
            want = _expected(history[index])[-1]
            got = record.stats[index]
            for key, value in want.items():
                assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-12), (
                    index, key)
            counts = record.histograms[index][:, 2]
            assert counts.sum() == g.size


def test_non_finite_elements_are_counted_and_left_out():
    from tb_gradients.window import source as window
    rng = np.random.default_rng(4)
    variables = [tf.Variable(tf.zeros((40, 30))) for _ in range(2)]
    windows = window.SourceWindows("probe", variables, 256, "uint8", 6)
    history = []
    for step in range(3):
        g = rng.normal(size=(40, 30)).astype(np.float32)
        g[:, 20:22] = 0.0  # two dead units
        if step == 1:
            g[3, 4], g[10, 0], g[7, 7] = np.nan, np.inf, -np.inf
            g[:, 25] = 0.0
            g[5, 25] = np.nan  # zeros and a NaN: not dead
        history.append(g.astype(np.float64))
        clean = np.ones((40, 30), np.float32)
        record = windows.end_window(windows.stack([g, clean]),
                                    probe_batches=1)
        want = _expected(history)[-1]
        got = record.stats[0]
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-5), (step, key)
        assert record.histograms[0][:, 2].sum() == np.isfinite(g).sum()
        # the clean neighbour in the same group is untouched by the NaN
        assert record.stats[1]["nan_count"] == 0
        assert record.stats[1]["norm"] == pytest.approx(1.0)
        codes = record.heatmaps[0][0]
        if step >= 1:
            # C keeps the NaN: the |C| channel marks its block
            assert (codes[2] == heatmap.HEATMAP_CODE_NAN).any()
