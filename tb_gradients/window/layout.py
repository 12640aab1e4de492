"""How a source's variables are laid out for the window end: grouped by
shape (stacked, so one call reduces a group), and per variable its matrix
view, pooling grid, histogram buckets and gate slices. Backend-neutral:
every capture stacks its window sums this way, and every kernel reads
these layouts."""

import numpy as np

from tb_gradients.format import heatmap as heatmap_format

# Grid of the pooled accumulated |G| when heatmaps are off: it still serves
# `dissolving_max`.
DEFAULT_POOL_CELLS = 128 * 128

# Largest number of elements stacked into one group (bounds the window
# end's temporaries); a larger variable is a group of its own, unstacked.
GROUP_ELEMENTS = 1 << 21


class VariableLayout:
    """Static description of one variable's window-end computation.

    Args:
      shape: the variable's shape.
      max_cells: cells of the pooled grid (heatmaps and accumulated |G|).
      heatmap: whether heatmap channels are returned.
      encoding: ``"uint8"`` or ``"float32"`` heatmap encoding.
      buckets: histogram buckets (0: no histogram).
      gate_count: fused recurrent gates on the last axis (0: none).
      gate_cells: cells per gate heatmap (0: none).
    """

    def __init__(self, shape, max_cells, heatmap, encoding, buckets,
                 gate_count=0, gate_cells=0):
        self.shape = tuple(int(d) for d in shape)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.view = heatmap_format.view_shape(self.shape)
        self.block = heatmap_format.pool_blocks(*self.view, max(1, max_cells))
        self.grid = (-(-self.view[0] // self.block[0]),
                     -(-self.view[1] // self.block[1]))
        self.exact = self.block == (1, 1)
        self.heatmap = bool(heatmap)
        self.encoding = encoding
        self.buckets = int(buckets)
        self.gate_count = int(gate_count)
        self.gate_cells = int(gate_cells)
        self.gate_view = self.gate_block = None
        if self.gate_count:
            gate_shape = self.shape[:-1] + (self.shape[-1] // self.gate_count,)
            self.gate_view = heatmap_format.view_shape(gate_shape)
            self.gate_block = heatmap_format.pool_blocks(*self.gate_view,
                                                max(1, self.gate_cells))

    @property
    def cells(self):
        return self.grid[0] * self.grid[1]

    @property
    def geometry(self):
        """``[rows, cols, block_rows, block_cols, buckets]`` for the steps."""
        return np.array(list(self.view) + list(self.block) + [self.buckets],
                        np.int32)

    @property
    def gate_geometry(self):
        """One gate's view and pooling, for `_gate_step`."""
        return np.array(list(self.gate_view) + list(self.gate_block) + [0],
                        np.int32)


def segment_ids(sizes):
    """int32 ``(sum(sizes),)``: for each element of a concatenation of
    arrays of ``sizes`` elements, the index of its array (the segment ids
    of the kernels' and captures' reductions over many small arrays at
    once)."""
    return np.repeat(np.arange(len(sizes), dtype=np.int32),
                     np.asarray(sizes, np.int64))


def group_by_shape(shapes, limit=GROUP_ELEMENTS):
    """Splits variable indices into groups of equal shape.

    The training capture keeps each group's window sums stacked in one
    ``(count, size)`` variable, and the window end reduces a group at once.

    Returns:
      list of lists of indices, in first-appearance order; each group's
      stacked size is at most ``limit`` elements unless a single variable
      is larger (then it is alone).
    """
    open_groups, groups = {}, []
    for index, shape in enumerate(shapes):
        key = tuple(int(d) for d in shape)
        size = int(np.prod(key, dtype=np.int64))
        group = open_groups.get(key)
        if group is None or (len(group) + 1) * size > limit:
            group = []
            groups.append(group)
            open_groups[key] = group
        group.append(index)
    return groups
