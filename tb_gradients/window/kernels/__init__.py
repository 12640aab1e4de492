"""The window end's device work, behind one interface per backend.

`window.source.SourceWindows` keeps the bookkeeping of a source's windows
(layouts, groups, the host-side statistics) and hands every operation on
device arrays to a `WindowKernel`: creating a group's accumulated state,
stacking per-variable gradients, the compiled window-end step of a group,
the masked recomputation of a non-finite variable, and the weights' norms.
A kernel returns host (numpy) arrays only, and only the small ones
(reductions, pooled heatmaps, histogram counts, gate tables).

`for_backend` is the one place that picks the kernel. Today every backend
uses the TensorFlow kernel (`kernels.tensorflow`): the JAX and PyTorch
captures hand their sums over through DLPack.
"""

import abc


class WindowKernel(abc.ABC):
    """The device operations of a window end (see the module docstring)."""

    @abc.abstractmethod
    def new_state(self, layout, count, variable):
        """A zero accumulated state for ``count`` variables of ``layout``,
        on the device of ``variable`` (the group's first)."""

    @abc.abstractmethod
    def stack(self, gradients):
        """Gradients of one group's variables as one ``(count, size)``
        float32 array."""

    @abc.abstractmethod
    def group_end(self, state, layout, gradients, record, gated=()):
        """Adds a group's window gradients to its ``state`` and reduces them.

        Args:
          state: the group's accumulated state (`new_state`), replaced.
          layout: the group's `window.layout.VariableLayout`.
          gradients: ``(count, size)`` window gradients of the group.
          record: False for a window that is not logged: only the state is
            updated, and None is returned.
          gated: ``(row, layout)`` of the group's fused recurrent weights.

        Returns:
          host arrays: ``reductions`` ``(count, len(REDUCTIONS))``,
          ``histogram`` counts, ``heatmap`` (when ``layout.heatmap``), and
          ``gates`` ``{row: (table, pooled)}``.
        """

    @abc.abstractmethod
    def masked_end(self, state, layout, gradients, row, update_l1):
        """Reduces row ``row`` of a group again over its finite elements
        only, and resets its compensation where ``C`` is not finite
        (``update_l1``: also replace its ``Σ_k ‖G_k‖₁``, when ``G`` held
        non-finite elements). Returns host arrays as `group_end`'s, of
        that one row."""

    @abc.abstractmethod
    def weight_norms(self, variables):
        """``‖W‖₂`` of each Keras variable now, float64 on the host."""


def for_backend(backend):
    """The window-end kernel for arrays of the Keras ``backend``."""
    del backend  # every backend's sums reach TensorFlow (DLPack)
    from tb_gradients.window.kernels import tensorflow

    return tensorflow.TensorFlowKernel()
