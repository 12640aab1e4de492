"""The pure functions of tb_gradients.stats against hand computations."""

import itertools

import numpy as np
import pytest

from tb_gradients import metadata
from tb_gradients import stats


@pytest.mark.parametrize("rows, cols, cells", list(itertools.product(
    [1, 3, 7, 64, 1000, 4608], [1, 5, 64, 2048, 100000], [1, 16, 128 * 128])))
def test_pool_blocks_respects_the_cell_budget(rows, cols, cells):
    block_rows, block_cols = stats.pool_blocks(rows, cols, cells)
    out_rows, out_cols = -(-rows // block_rows), -(-cols // block_cols)
    assert out_rows * out_cols <= cells
    # no needless pooling: a view that fits is kept whole
    if rows * cols <= cells:
        assert (block_rows, block_cols) == (1, 1)


def test_pool_mean_and_max_with_ragged_blocks():
    view = np.arange(35, dtype=np.float64).reshape(5, 7)
    mean = stats.pool_mean(view, 2, 3)
    maxi = stats.pool_max(view, 2, 3)
    assert mean.shape == (3, 3)
    assert mean[0, 0] == view[0:2, 0:3].mean()
    assert mean[2, 2] == view[4:5, 6:7].mean()
    assert mean[1, 2] == view[2:4, 6:7].mean()
    assert maxi[2, 1] == view[4:5, 3:6].max()


def test_pool_spreads_nan():
    view = np.ones((4, 4))
    view[1, 1] = np.nan
    assert np.isnan(stats.pool_mean(view, 2, 2)[0, 0])
    assert stats.pool_mean(view, 2, 2)[1, 1] == 1


def test_log_uint8_round_trip_error_bound():
    scale = 3.7e-3
    values = scale * np.logspace(-5.99, 0, 2000)
    decoded = stats.decode_log_uint8(stats.encode_log_uint8(values, scale),
                                     scale)
    relative = np.abs(decoded / values - 1)
    bound = 10 ** (metadata.HEATMAP_DECADES / 252 / 2) - 1
    assert relative.max() <= bound + 1e-12
    assert bound < 0.03


def test_log_uint8_special_codes():
    codes = stats.encode_log_uint8(
        np.array([0.0, 1e-12, 1.0, np.inf, np.nan]), 1.0)
    assert codes.tolist() == [0, 0, 253, 254, 255]
    decoded = stats.decode_log_uint8(codes, 1.0)
    assert decoded[0] == 0 and decoded[2] == 1.0
    assert np.isposinf(decoded[3]) and np.isnan(decoded[4])


def test_view_shape():
    assert stats.view_shape(()) == (1, 1)
    assert stats.view_shape((7,)) == (1, 7)
    assert stats.view_shape((3, 3, 16, 32)) == (144, 32)
    assert stats.view_shape((6, 5)) == (6, 5)


def test_histogram_constant_and_empty():
    constant = stats.histogram_buckets(np.full(10, 2.0), 4)
    assert constant.shape == (4, 3) and constant[:, 2].sum() == 10
    assert stats.histogram_buckets(np.array([np.nan]), 4).shape == (0, 3)


def test_dissolving_is_the_cancelled_part():
    g1, g2 = np.array([1.0, -2.0]), np.array([-1.0, -1.0])
    c, a = stats.accumulate(None, None, g1)
    c, a = stats.accumulate(c, a, g2)
    np.testing.assert_array_equal(stats.dissolving(c, a), [2.0, 0.0])


def test_timestep_view_pools_each_direction_apart():
    gradient = np.arange(2 * 5 * 6, dtype=np.float64).reshape(2, 5, 6)
    view = stats.timestep_view(gradient, max_timesteps=2, max_channels=2,
                               directions=2)
    assert view["direction_ranges"] == [[0, 2], [2, 4]]
    assert view["values"].shape == (2, 2, 4)
    # backward half channels 3..5, block of 2: [3, 4] then [5]
    assert view["values"][0, 0, 2] == pytest.approx(
        gradient[0, 0:3, 3:5].mean())
    assert view["values"][0, 1, 3] == pytest.approx(
        gradient[0, 3:5, 5:6].mean())
    norms = np.sqrt((gradient ** 2).sum(axis=2))
    assert view["l2"][1, 1] == pytest.approx(norms[1, 3:5].mean(), rel=1e-6)


def test_gate_statistics_split_on_the_last_axis():
    gradient = np.concatenate([np.full((2, 3), k + 1.0) for k in range(4)],
                              axis=1)
    table = stats.gate_statistics(gradient, 4)
    assert table[:, 2].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert table[3, 0] == pytest.approx(np.sqrt(6 * 16))
