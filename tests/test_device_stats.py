"""The device pieces of tb_gradients.device_stats against numpy computations."""

import numpy as np
import pytest
import tensorflow as tf

from tb_gradients import device_stats
from tb_gradients import metadata
from tb_gradients import stats


def _pooled(view, block, reducer):
    geometry = tf.constant(list(view.shape) + list(block) + [0], tf.int32)
    return device_stats.pool(tf.constant(view), geometry, reducer).numpy()


def test_pool_mean_and_max_with_ragged_blocks():
    view = np.arange(35, dtype=np.float32).reshape(5, 7)
    sums = _pooled(view, (2, 3), tf.math.segment_sum)
    maxima = _pooled(view, (2, 3), tf.math.segment_max)
    counts = device_stats.block_counts(
        tf.constant([5, 7, 2, 3, 0], tf.int32)).numpy()
    mean = sums / counts
    assert mean.shape == (3, 3)
    assert mean[0, 0] == view[0:2, 0:3].mean()
    assert mean[2, 2] == view[4:5, 6:7].mean()
    assert mean[1, 2] == view[2:4, 6:7].mean()
    assert maxima[2, 1] == view[4:5, 3:6].max()


def test_pool_keeps_stacked_views_apart():
    views = np.arange(2 * 5 * 4, dtype=np.float32).reshape(10, 4)
    sums = _pooled_stacked(views, (5, 4), (2, 2))
    assert sums.shape == (6, 2)
    # second view's first block: rows 5..6, cols 0..1
    assert sums[3, 0] == views[5:7, 0:2].sum()
    assert sums[2, 1] == views[4:5, 2:4].sum()


def _pooled_stacked(values, view, block):
    geometry = tf.constant(list(view) + list(block) + [0], tf.int32)
    return device_stats.pool(tf.constant(values), geometry,
                             tf.math.segment_sum).numpy()


def test_log_uint8_round_trip_error_bound():
    scale = 3.7e-3
    values = scale * np.logspace(-5.99, 0, 2000)
    codes = device_stats.encode_log_uint8(tf.constant(values), scale).numpy()
    decoded = stats.decode_log_uint8(codes, scale)
    relative = np.abs(decoded / values - 1)
    bound = 10 ** (metadata.HEATMAP_DECADES / 252 / 2) - 1
    assert relative.max() <= bound + 1e-12
    assert bound < 0.03


def test_log_uint8_special_codes():
    codes = device_stats.encode_log_uint8(
        tf.constant([0.0, 1e-12, 1.0, np.inf, np.nan], tf.float64),
        1.0).numpy()
    assert codes.tolist() == [0, 0, 253, 254, 255]
    decoded = stats.decode_log_uint8(codes, 1.0)
    assert decoded[0] == 0 and decoded[2] == 1.0
    assert np.isposinf(decoded[3]) and np.isnan(decoded[4])
    # no usable scale: only the special codes survive
    codes = device_stats.encode_log_uint8(
        tf.constant([1.0, np.nan], tf.float64), 0.0).numpy()
    assert codes.tolist() == [0, 255]


def _histogram(values, buckets):
    values = tf.constant(values)[None]
    low, high = tf.reduce_min(values, 1), tf.reduce_max(values, 1)
    counts = device_stats.histogram_counts(values, low, high, buckets)
    return device_stats.histogram_rows(low[0].numpy(), high[0].numpy(),
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
    counts = device_stats.histogram_counts(
        tensor, tf.reduce_min(tensor, 1), tf.reduce_max(tensor, 1), 2).numpy()
    assert counts.tolist() == [[2, 2], [3, 1]]


def test_histogram_constant_and_empty():
    constant = _histogram(np.full(10, 2.0, np.float32), 4)
    assert constant.shape == (4, 3) and constant[:, 2].sum() == 10
    assert constant[0, 0] == 1.5 and constant[0, 1] == 2.5
    assert device_stats.histogram_rows(np.inf, -np.inf,
                                       np.zeros(4)).shape == (0, 3)


def _sum_float32(terms, compensated):
    total = tf.zeros(terms.shape[1:], tf.float32)
    compensation = tf.zeros(terms.shape[1:], tf.bfloat16)
    for term in terms:
        term = tf.constant(term)
        if compensated:
            total, compensation = device_stats.kahan_add(total, compensation,
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
    total, compensation = device_stats.kahan_add(
        tf.constant([1.0, 1.0, 1.0]), tf.zeros([3], tf.bfloat16),
        tf.constant([np.nan, np.inf, 2.0], tf.float32))
    compensation = device_stats.finite_compensation(total, compensation)
    total, compensation = device_stats.kahan_add(
        total, compensation, tf.constant([1.0, 1.0, 1.0]))
    values = total.numpy()
    assert np.isnan(values[0]) and np.isposinf(values[1]) and values[2] == 4


def test_gate_step_splits_on_the_last_axis():
    gradient = np.concatenate([np.full((2, 3), k + 1.0) for k in range(4)],
                              axis=1).astype(np.float32)
    table, heatmap = device_stats.gate_step_function()(
        tf.constant(gradient), tf.constant(4, tf.int32),
        np.array([2, 3, 1, 1, 0], np.int32))
    table = table.numpy()
    assert table[:, 2].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert table[3, 0] == pytest.approx(np.sqrt(6 * 16))
    heatmap = heatmap.numpy().reshape(4, 2, 3)
    np.testing.assert_array_equal(heatmap[2], np.full((2, 3), 3.0))
