"""What every backend's capture shares: the optimizer that sees unscaled
gradients, one capture per model, the per-step buffers' size, and the base of
the captures that own their accumulators (JAX, PyTorch)."""

import abc

import numpy as np

from tb_gradients import compat
from tb_gradients.window import layout

# Row capacity of the per-step buffers when the number of steps per epoch is
# not known in advance; later steps are counted but not kept per step.
DEFAULT_STEP_CAPACITY = 10000
MAX_STEP_CAPACITY = 1000000


def inner_optimizer(optimizer):
    """The optimizer whose ``update_step`` sees unscaled gradients."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def model_capture(cls, model, attribute):
    """The model's capture of class ``cls``, created at the first request
    and kept in ``attribute``, set with `object.__setattr__` so that no
    framework's tracking sees it."""
    existing = model.__dict__.get(attribute)
    if existing is None:
        existing = cls(model)
        object.__setattr__(model, attribute, existing)
    return existing


def step_capacity(steps_per_epoch):
    """Rows of the per-step buffers for epochs of ``steps_per_epoch``."""
    capacity = max(DEFAULT_STEP_CAPACITY, int(steps_per_epoch or 0))
    return min(capacity, MAX_STEP_CAPACITY)


class TrainingCapture(abc.ABC):
    """The training source's capture, as the callback and the window end
    use it, on every backend (`capture.tensorflow`, `capture.jax`,
    `capture.torch`).

    One capture exists per model (`for_model`, kept on the model under
    ``MODEL_ATTRIBUTE``) and outlives callbacks and `fit` calls: the hooked
    train step is built once and reused. Between `attach` and `detach` the
    model's train step adds every applied gradient to the window sums
    ``Σg``, stacked by shape (`window.layout.group_by_shape`), and per
    variable ``(steps, Σ‖g‖₁, Σ‖g‖₂²)``; the per-step table keeps each
    step's ``(‖g‖₂², max |g|)``.
    """

    # Attribute of the model holding its capture, set with
    # `object.__setattr__` so that no framework's tracking sees it.
    MODEL_ATTRIBUTE = None

    @classmethod
    def for_model(cls, model):
        return model_capture(cls, model, cls.MODEL_ATTRIBUTE)

    @property
    def variables(self):
        """The Keras variables captured, in the optimizer's order."""
        return list(self._variables or [])

    @property
    def groups(self):
        """Indices of the variables whose window sums are stacked together
        (`window.layout.group_by_shape`)."""
        return [list(group) for group in self._groups]

    @abc.abstractmethod
    def attach(self, steps_per_epoch=None):
        """Makes the model's train step record into the window sums."""

    @abc.abstractmethod
    def detach(self):
        """Gives the model its plain train step back."""

    @abc.abstractmethod
    def stacked_window_sums(self):
        """Each group's window sums ``(count, size)``, for the window end."""

    @property
    @abc.abstractmethod
    def window_scalars(self):
        """Per variable ``(steps, Σ‖g‖₁, Σ‖g‖₂²)`` (``numpy()``: float64)."""

    @abc.abstractmethod
    def first_nonfinite_steps(self):
        """Per variable, the run's first step whose gradient was not
        finite (-1: none)."""

    @abc.abstractmethod
    def read_steps(self):
        """``(table, skipped)``: the window's per-step ``(l2, max_abs)``
        rows and the steps the loss-scale optimizer skipped."""

    @abc.abstractmethod
    def begin_window(self):
        """Zeroes the window sums and starts the per-step table."""

    @abc.abstractmethod
    def reset_run(self):
        """Forgets the run's state (a `fit` from epoch 0)."""

    @abc.abstractmethod
    def run_arrays(self):
        """The run's state a resume saves, as named host arrays."""

    @abc.abstractmethod
    def load_run_arrays(self, arrays):
        """Continues the run's state saved by `run_arrays`."""

    @abc.abstractmethod
    def open_window_arrays(self):
        """The open window's sums a resume saves, as named host arrays."""

    @abc.abstractmethod
    def load_open_window_arrays(self, arrays):
        """Continues an open window saved by `open_window_arrays`."""

    # -- the one schema of the saved state (every backend saves and loads
    # these names, shapes and dtypes, so a state saved on one backend
    # continues on another) --------------------------------------------------

    def _saved_sum_shape(self, number):
        """Group ``number``'s window sum as a resume saves it: ``(count,
        size)`` when stacked, else the variable's shape."""
        group = self._groups[number]
        shape = tuple(self._variables[group[0]].shape)
        if len(group) > 1:
            return (len(group), int(np.prod(shape, dtype=np.int64)))
        return shape

    def _checked_first_nonfinite(self, arrays):
        """The saved first non-finite steps; ValueError when missing or of
        another shape."""
        array = arrays.get("first_nonfinite")
        expected = (len(self._variables),)
        if array is None or tuple(array.shape) != expected:
            raise ValueError(
                "the run's first non-finite steps: expected "
                f"{expected}, found {None if array is None else array.shape}")
        return array

    def _check_open_window(self, arrays):
        """ValueError naming the first saved open-window array that is
        missing or of another shape or dtype."""
        expected = [(f"sum/{n}", self._saved_sum_shape(n), np.float32)
                    for n in range(len(self._groups))]
        expected += [("scalars", (len(self._variables), 3), np.float64),
                     ("step_sq", (self._capacity + 1,), np.float32),
                     ("step_max", (self._capacity + 1,), np.float32),
                     ("skipped", (), np.float32), ("start", (), np.int64)]
        for name, shape, dtype in expected:
            array = arrays.get(name)
            if (array is None or tuple(array.shape) != shape
                    or array.dtype != dtype):
                raise ValueError(
                    f"open window {name!r}: expected {np.dtype(dtype).name} "
                    f"{shape}, found "
                    f"{None if array is None else (array.dtype.name, array.shape)}")


class HostArray:
    """A host array with the ``numpy()`` of a tensor."""

    def __init__(self, array):
        self._array = array

    def numpy(self):
        return self._array


class OwnedAccumulatorCapture(TrainingCapture):
    """What the JAX and PyTorch captures share (`capture.jax`,
    `capture.torch`): accumulators the capture owns (not variables), the
    optimizer methods it patches, and the layout and checks of the state a
    resume saves, in the names, shapes and dtypes of
    `TrainingGradientCapture`'s (a state saved on one backend continues on
    another).
    """

    def __init__(self, model):
        self._model = model
        self._variables = None
        self._groups = []
        self._slot = {}
        self._capacity = 0
        self._attached = False
        self._optimizer = self._inner = None
        self._patched = []

    def _bind_optimizer(self, backend, steps_per_epoch):
        """Takes the model's optimizer (checked for the private names the
        ``backend``'s hook needs, built if Keras has not built it yet).

        Returns:
          ``(variables, capacity)``: the variables it updates and the rows
          of the per-step buffers.
        """
        model = self._model
        self._optimizer = model.optimizer
        self._inner = inner_optimizer(model.optimizer)
        compat.check(backend, model, self._optimizer, self._inner)
        if not self._optimizer.built:
            self._optimizer.build(model.trainable_variables)
        return (list(self._inner._trainable_variables),
                step_capacity(steps_per_epoch))

    def _needs_layout(self, variables, capacity):
        return (self._variables is None
                or [id(v) for v in variables]
                != [id(v) for v in self._variables]
                or capacity > self._capacity)

    def _lay_out(self, variables, capacity):
        """Groups the variables by shape (`layout.group_by_shape`)."""
        self._variables = variables
        self._capacity = capacity
        self._groups = layout.group_by_shape(
            [v.shape for v in variables])
        self._slot = {index: (number, row)
                      for number, group in enumerate(self._groups)
                      for row, index in enumerate(group)}

    def _patch(self, owner, name, replacement):
        self._patched.append((owner, name, owner.__dict__.get(name)))
        setattr(owner, name, replacement)

    def _unpatch(self):
        for owner, name, original in reversed(self._patched):
            if original is None:
                owner.__dict__.pop(name, None)
            else:
                setattr(owner, name, original)
        self._patched = []
