"""The window end's device work, behind one interface per backend.

`window.source.SourceWindows` keeps the bookkeeping of a source's windows
(layouts, groups, the host-side statistics) and hands every operation on
device arrays to a `WindowKernel`: creating a group's accumulated state,
stacking per-variable gradients, the compiled window-end step of a group,
the masked recomputation of a non-finite variable, and the weights' norms.
These return device arrays; `WindowKernel.to_host` is the one point where
a window's results cross to the host, once per window, and only the small
ones (reductions, pooled heatmaps, histogram counts, gate tables): its
``host_bytes`` counts them.

Each backend's kernel is written in its own ops and runs where the
accumulators live (`kernels.tensorflow`, `kernels.jax`, `kernels.torch`,
the same names as the captures'); `for_backend` is the one place that
picks it. The state every kernel keeps per group is `GroupState`, saved
for a resume under the same names and dtypes by all three.
"""

import abc
import importlib

import numpy as np

# The state kept per group, with the dtype it is saved as (docs/FORMAT.md,
# "Resume state"): C, float32; its Kahan compensation, bfloat16 saved as its
# uint16 bits; the block sums of A = Σ_k |G_k| and Σ_k ‖G_k‖₁, float64.
STATE_FIELDS = ("accumulated", "compensation", "pooled_abs", "accumulated_l1")
SAVED_DTYPES = {"accumulated": np.dtype(np.float32),
                "compensation": np.dtype(np.uint16),
                "pooled_abs": np.dtype(np.float64),
                "accumulated_l1": np.dtype(np.float64)}


def state_shapes(layout, count):
    """Each state field's shape for ``count`` variables of ``layout``."""
    return {"accumulated": (count, layout.size),
            "compensation": (count, layout.size),
            "pooled_abs": (count, layout.cells),
            "accumulated_l1": (count,)}


class GroupState:
    """The state carried from window to window for one group: the
    backend's arrays, on the group's device, replaced by each window's
    step (only the window end reads or writes them).

    Args:
      values: one array per `STATE_FIELDS`.
      shapes: `state_shapes` of the group.
    """

    FIELDS = STATE_FIELDS

    def __init__(self, values, shapes):
        self.shapes = dict(shapes)
        self.replace(values)

    def values(self):
        return tuple(getattr(self, name) for name in self.FIELDS)

    def replace(self, values):
        for name, value in zip(self.FIELDS, values):
            setattr(self, name, value)

    @property
    def nbytes(self):
        """Device bytes of the state (bfloat16 compensation: 2 per
        element)."""
        return sum(int(np.prod(self.shapes[name], dtype=np.int64))
                   * SAVED_DTYPES[name].itemsize for name in self.FIELDS)

    def checked(self, arrays):
        """``arrays`` (field -> host array), in field order, after checking
        each field's presence, shape and saved dtype; ValueError naming the
        first that differs."""
        result = []
        for name in self.FIELDS:
            array = arrays.get(name)
            shape, dtype = tuple(self.shapes[name]), SAVED_DTYPES[name]
            if (array is None or tuple(array.shape) != shape
                    or array.dtype != dtype):
                raise ValueError(
                    f"state field {name!r}: expected {dtype.name} {shape}, "
                    f"found {None if array is None else (array.dtype.name, array.shape)}")
            result.append(array)
        return result


class WindowKernel(abc.ABC):
    """The device operations of a window end (see the module docstring).

    Attributes:
      host_bytes: bytes `to_host` has moved to the host so far.
    """

    def __init__(self):
        self.host_bytes = 0

    @abc.abstractmethod
    def new_state(self, layout, count, variable):
        """A zero `GroupState` for ``count`` variables of ``layout``, on
        the device of ``variable`` (the group's first)."""

    def prepare(self, groups, variables):
        """Starts the one-time work of a window end for these groups (the
        JAX kernel compiles each layout, in the background, while the first
        window trains); the others have none.

        Args:
          groups: ``(layout, count, variable)`` of each group (``variable``:
            its first).
          variables: every variable of the source (the weights' norms).
        """
        del groups, variables

    @abc.abstractmethod
    def saved_arrays(self, state):
        """``(field, array)`` pairs of a state in `SAVED_DTYPES` (device
        arrays: `resume` copies them to the host in chunks)."""

    @abc.abstractmethod
    def load_state(self, state, arrays):
        """Replaces ``state`` with host arrays of `saved_arrays`' layout;
        ValueError (and nothing changed) when one differs."""

    @abc.abstractmethod
    def stack(self, gradients):
        """Gradients of one group's variables as one ``(count, size)``
        float32 device array."""

    @abc.abstractmethod
    def group_end(self, state, layout, gradients, record, gated=()):
        """Adds a group's window gradients to its ``state`` and reduces them.

        Args:
          state: the group's `GroupState`, replaced.
          layout: the group's `window.layout.VariableLayout`.
          gradients: ``(count, size)`` window gradients of the group.
          record: False for a window that is not logged: only the state is
            updated, and None is returned.
          gated: ``(row, layout)`` of the group's fused recurrent weights.

        Returns:
          device arrays: ``reductions`` ``(count, len(REDUCTIONS))``
          float64, ``histogram`` counts, ``heatmap`` (when
          ``layout.heatmap``), and ``gates`` ``{row: (table, pooled)}``.
        """

    def window_end(self, states, group_layouts, stacked, record, gated):
        """`group_end` of every group of a source; a kernel may batch
        groups into fewer calls (the JAX kernel reduces all its exact
        groups in one).

        Args:
          states, group_layouts, stacked: per group, its state, layout and
            ``(count, size)`` window gradients.
          record: as `group_end`'s.
          gated: per group, its ``(row, layout)`` fused recurrent weights.

        Returns:
          per group, `group_end`'s outputs (None when not ``record``).
        """
        return [self.group_end(state, layout, gradients, record, rows)
                for state, layout, gradients, rows in zip(
                    states, group_layouts, stacked, gated)]

    @abc.abstractmethod
    def masked_end(self, state, layout, gradients, update_l1):
        """Reduces a group again over its finite elements only, after
        `group_end` found non-finite sums in some of its rows, and resets
        its compensation where ``C`` is not finite. Every row is reduced
        (one call per group, whatever the number of flagged rows: a
        non-finite window costs at most a second pass over the groups
        that hold one); the caller keeps the flagged rows' figures.

        Args:
          update_l1: per row, whether to add the finite part of ``‖G‖₁``
            to its ``Σ_k ‖G_k‖₁`` (the rows whose ``G`` held non-finite
            elements: the main step added nothing for them).

        Returns:
          device arrays as `group_end`'s, of every row.
        """

    @abc.abstractmethod
    def weight_norms(self, variables):
        """``‖W‖₂`` of each Keras variable now, a float64 device array."""

    @abc.abstractmethod
    def _fetch(self, arrays):
        """Host (numpy) copies of a list of device arrays."""

    def to_host(self, tree):
        """Host copies of every array of a nested dict/list/tuple, fetched
        together: the one point where a window's results leave the device.
        Adds their bytes to ``host_bytes``."""
        leaves = []
        _flatten(tree, leaves)
        host = self._fetch(leaves)
        self.host_bytes += sum(int(array.nbytes) for array in host)
        return _unflatten(tree, iter(host))


def _flatten(tree, leaves):
    if isinstance(tree, dict):
        for value in tree.values():
            _flatten(value, leaves)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            _flatten(value, leaves)
    elif tree is not None:
        leaves.append(tree)


def _unflatten(tree, host):
    if isinstance(tree, dict):
        return {key: _unflatten(value, host) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_unflatten(value, host) for value in tree)
    return None if tree is None else next(host)


def for_backend(backend):
    """The window-end kernel for arrays of the Keras ``backend``
    (``"tensorflow"``, ``"jax"`` or ``"torch"``)."""
    module = importlib.import_module(f"{__name__}.{backend}")
    return module.Kernel()
