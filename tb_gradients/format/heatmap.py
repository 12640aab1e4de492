"""The heatmap's geometry and its uint8 encoding, as docs/FORMAT.md states
them: each variable viewed as a matrix, pooled into blocks of at most
``heatmap_cells`` cells, each channel log-quantised on its scale. The
window-end kernels encode on the device (`window.kernels`); this module
holds the geometry they share and the decoding every reader uses."""

import numpy as np

from tb_gradients.format import metadata


def view_shape(shape):
    """The 2-D view of a variable used for heatmaps.

    Dense ``(in, out)`` stays as is; a convolution kernel
    ``(kh, kw, ..., cin, cout)`` becomes ``(kh*kw*...*cin, cout)``; a vector
    ``(n,)`` becomes ``(1, n)``; a scalar ``(1, 1)``.
    """
    shape = tuple(int(d) for d in shape)
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return 1, shape[0]
    rows = 1
    for d in shape[:-1]:
        rows *= d
    return rows, shape[-1]


def pool_blocks(rows, cols, max_cells):
    """Block size ``(block_rows, block_cols)`` giving at most ``max_cells``.

    Halves the larger pooled side until the cell count fits, so a tall
    kernel keeps its column resolution as long as possible.
    """
    if max_cells < 1:
        raise ValueError(f"max_cells must be >= 1. Received: {max_cells}")
    block_rows, block_cols = 1, 1
    out_rows, out_cols = rows, cols
    while out_rows * out_cols > max_cells:
        if out_rows >= out_cols:
            block_rows = -(-rows // -(-out_rows // 2))
            out_rows = -(-rows // block_rows)
        else:
            block_cols = -(-cols // -(-out_cols // 2))
            out_cols = -(-cols // block_cols)
    return block_rows, block_cols


def decode_log_uint8(codes, scale, decades=metadata.HEATMAP_DECADES):
    """Inverse of `encode_log_uint8` (up to its rounding)."""
    codes = np.asarray(codes)
    levels = metadata.HEATMAP_CODE_LEVELS
    exponent = (codes.astype(np.float64) - 1) / (levels - 1) * decades - decades
    values = float(scale) * np.power(10.0, exponent)
    values = np.where(codes == 0, 0.0, values)
    values = np.where(codes == metadata.HEATMAP_CODE_INF, np.inf, values)
    return np.where(codes == metadata.HEATMAP_CODE_NAN, np.nan, values)
