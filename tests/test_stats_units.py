"""The host-side pure functions of tb_gradients.stats against hand computations."""

import itertools

import numpy as np
import pytest

from tb_gradients.format import heatmap
from tb_gradients.format import timesteps as format_timesteps


@pytest.mark.parametrize("rows, cols, cells", list(itertools.product(
    [1, 3, 7, 64, 1000, 4608], [1, 5, 64, 2048, 100000], [1, 16, 128 * 128])))
def test_pool_blocks_respects_the_cell_budget(rows, cols, cells):
    block_rows, block_cols = heatmap.pool_blocks(rows, cols, cells)
    out_rows, out_cols = -(-rows // block_rows), -(-cols // block_cols)
    assert out_rows * out_cols <= cells
    # no needless pooling: a view that fits is kept whole
    if rows * cols <= cells:
        assert (block_rows, block_cols) == (1, 1)


def test_view_shape():
    assert heatmap.view_shape(()) == (1, 1)
    assert heatmap.view_shape((7,)) == (1, 7)
    assert heatmap.view_shape((3, 3, 16, 32)) == (144, 32)
    assert heatmap.view_shape((6, 5)) == (6, 5)


def test_timestep_view_pools_each_direction_apart():
    gradient = np.arange(2 * 5 * 6, dtype=np.float64).reshape(2, 5, 6)
    view = format_timesteps.timestep_view(gradient, max_timesteps=2, max_channels=2,
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
