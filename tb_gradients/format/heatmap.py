"""The ``heatmap`` kind, as docs/FORMAT.md states it: each variable viewed
as a matrix, pooled into blocks of at most ``heatmap_cells`` cells, four
channels (|G|, its max, |C|, D), each log-quantised on its scale. The
window-end kernels encode on the device (`window.kernels`); this module
holds the channels, the encoding's constants, the geometry the kernels
share, the writing and the decoding every reader uses."""

import numpy as np

from tb_gradients.format import decoding
from tb_gradients.format import metadata

# Channels of a heatmap tensor, in order, and which statistic of the same
# variable and window is the scale of each channel's uint8 encoding.
HEATMAP_CHANNELS = (
    "gradient_mean_abs",
    "gradient_max_abs",
    "accumulated_mean_abs",
    "dissolving_mean",
)
HEATMAP_CHANNEL_SCALES = (
    "max_abs",
    "max_abs",
    "accumulated_max_abs",
    "dissolving_max",
)

# uint8 heatmap encoding: 0 = zero (or below the range), 1..253 = log-spaced
# values over HEATMAP_DECADES decades below the channel scale, 254 = +Inf,
# 255 = NaN.
HEATMAP_ENCODINGS = ("uint8", "float32")
HEATMAP_DECADES = 6.0
HEATMAP_CODE_LEVELS = 253  # codes 1..253
HEATMAP_CODE_INF = 254
HEATMAP_CODE_NAN = 255


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


def decode_log_uint8(codes, scale, decades=HEATMAP_DECADES):
    """Inverse of `encode_log_uint8` (up to its rounding)."""
    codes = np.asarray(codes)
    levels = HEATMAP_CODE_LEVELS
    exponent = (codes.astype(np.float64) - 1) / (levels - 1) * decades - decades
    values = float(scale) * np.power(10.0, exponent)
    values = np.where(codes == 0, 0.0, values)
    values = np.where(codes == HEATMAP_CODE_INF, np.inf, values)
    return np.where(codes == HEATMAP_CODE_NAN, np.nan, values)


def decode(content, value):
    """One stored heatmap tensor, checked against its content: one
    ``(rows, cols)`` plane per channel, in the dtype of its encoding.

    Raises:
      decoding.ReadError: for an unknown encoding, or any other shape or
        dtype.
    """
    encoding = content.get("encoding", "uint8")
    if encoding not in HEATMAP_ENCODINGS:
        raise decoding.ReadError(
            f"unknown heatmap encoding {encoding!r} (this version reads "
            f"{', '.join(HEATMAP_ENCODINGS)})")
    channels = content.get("channels")
    count = (len(channels) if isinstance(channels, list) and channels
             else len(HEATMAP_CHANNELS))
    return decoding.checked(
        value, f"a {encoding} tensor of shape ({count}, rows, cols)",
        ndim=3, shape=(count, None, None), dtype=encoding)


def write_heatmap(batch, source, variable, encoded, block, encoding):
    """Pooled heatmaps of |G|, its max, |C| and D, shape ``(4, rows, cols)``.

    Args:
      variable: dict with ``name``, ``layer``, ``index``, ``shape``.
      encoded: the channels as computed on the device (uint8 codes or
        float32 values, see `window.kernels`).
      block: ``(block_rows, block_cols)`` of the pooling.
      encoding: one of ``HEATMAP_ENCODINGS``.
    """
    summary_metadata = metadata.plugin_metadata(
        metadata.KIND_HEATMAP, source, window=batch.window,
        description=f"Pooled gradient heatmaps of {variable['name']}",
        variable=variable["name"], layer=variable["layer"],
        index=variable["index"], shape=list(variable["shape"]),
        view_shape=list(view_shape(variable["shape"])),
        block=[int(b) for b in block],
        channels=list(HEATMAP_CHANNELS),
        channel_scales=list(HEATMAP_CHANNEL_SCALES),
        encoding=encoding, decades=HEATMAP_DECADES)
    batch.tensor(metadata.heatmap_tag(source, variable["name"]), encoded,
                 summary_metadata)
