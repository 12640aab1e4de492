"""Getting gradients out of Keras: the optimizer hook and the probe.

``TrainingGradientCapture`` records the gradients the optimizer really
applies, inside the compiled train function, with no extra forward or
backward pass: it wraps the optimizer's per-variable ``update_step``, where
Keras (TensorFlow backend) has already all-reduced the gradients across
replicas, clipped them and, for a ``LossScaleOptimizer``, unscaled them.

``ProbeGradients`` computes the gradient of the loss on fixed probe data at
the current weights with a ``tf.GradientTape`` (one extra pass per logged
epoch).

This is the only module that touches private Keras attributes; they are
listed in ``PRIVATE_KERAS_ATTRIBUTES`` with the Keras versions checked.
"""

import numpy as np
import tensorflow as tf

# Private Keras attributes the optimizer hook relies on, checked against
# Keras 3.10 - 3.15 (TensorFlow backend). `check_private_attributes` names
# the missing one when a future Keras changes them.
KERAS_VERSIONS_CHECKED = "3.10 - 3.15"
PRIVATE_KERAS_ATTRIBUTES = (
    # list of the variables the optimizer updates, in model order
    "_trainable_variables",
    # maps the tf.Variable given to update_step to its position
    "_get_variable_index",
    # the tf.distribute strategy the optimizer was created under
    "_distribution_strategy",
)
# LossScaleOptimizer: the branch taken on a step with non-finite gradients.
LOSS_SCALE_SKIP_METHOD = "_stateful_handle_non_finite_grads"

# Row capacity of the per-step buffers when the number of steps per epoch is
# not known in advance; later steps are counted but not kept per step.
DEFAULT_STEP_CAPACITY = 10000
MAX_STEP_CAPACITY = 1000000


def inner_optimizer(optimizer):
    """The optimizer whose ``update_step`` sees unscaled gradients."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def check_private_attributes(optimizer):
    """Raises a clear error if this Keras lacks what the hook needs."""
    inner = inner_optimizer(optimizer)
    for name in PRIVATE_KERAS_ATTRIBUTES:
        if not hasattr(inner, name):
            raise RuntimeError(
                f"tb_gradients cannot hook this optimizer: "
                f"{type(inner).__name__} has no attribute {name!r}. The "
                f"training-gradient capture was checked against Keras "
                f"{KERAS_VERSIONS_CHECKED}; use source='probe' with this "
                f"Keras version, or a checked one."
            )
    if inner is not optimizer and not hasattr(optimizer, LOSS_SCALE_SKIP_METHOD):
        raise RuntimeError(
            f"tb_gradients cannot count skipped steps: "
            f"{type(optimizer).__name__} has no attribute "
            f"{LOSS_SCALE_SKIP_METHOD!r} (checked against Keras "
            f"{KERAS_VERSIONS_CHECKED})."
        )


def _plain_variable(variable):
    """The ``tf.Variable`` behind a Keras variable."""
    return getattr(variable, "value", variable) if hasattr(
        variable, "path") else variable


class TrainingGradientCapture:
    """Per-epoch sums of the applied gradients, accumulated in the train step.

    Per trainable variable, float32 ``tf.Variable``s colocated with it hold
    ``sum g``, ``sum |g|`` and ``sum g**2`` over the epoch's steps and the
    number of steps it received a gradient. Per step, two buffers hold the
    squared global L2 norm and the largest ``|g|``. None of these is an
    attribute of the model or the optimizer, so checkpoints do not see them.
    """

    def __init__(self, model):
        self._model = model
        self._optimizer = model.optimizer
        self._inner = inner_optimizer(model.optimizer)
        self._variables = None
        self._sums = self._sums_abs = self._sums_sq = self._counts = None
        self._step_sq = self._step_max = None
        self._epoch_start = None
        self._skipped = None
        self._capacity = 0
        self._attached = False
        self._snapshot = None
        self._fresh = False
        self._original_update_step = None
        self._original_skip = None

    @property
    def variables(self):
        """The Keras variables captured, in the optimizer's order."""
        return list(self._variables or [])

    def attach(self, steps_per_epoch=None):
        """Creates the accumulators, wraps the optimizer, rebuilds `fit`'s step.

        Args:
          steps_per_epoch: steps per epoch if known, to size the per-step
            buffers.
        """
        if self._attached:
            return
        check_private_attributes(self._optimizer)
        if not self._optimizer.built:
            # Keras builds the optimizer lazily at its first step, the same
            # way; the accumulators need its variable list now.
            with self._inner._distribution_strategy.scope():
                self._optimizer.build(self._model.trainable_variables)
        variables = list(self._inner._trainable_variables)
        capacity = DEFAULT_STEP_CAPACITY
        if steps_per_epoch:
            capacity = int(min(max(int(steps_per_epoch), 1), MAX_STEP_CAPACITY))
        if (self._variables is None
                or [id(v) for v in variables] != [id(v) for v in self._variables]
                or capacity != self._capacity):
            self._create_accumulators(variables, capacity)
        self._wrap_optimizer()
        self._attached = True
        self._fresh = False  # the first epoch starts with a reset
        self._model.make_train_function(force=True)

    def detach(self):
        """Undoes `attach`; the next `fit` rebuilds its own train function."""
        if not self._attached:
            return
        self._attached = False
        if self._original_update_step is None:
            self._inner.__dict__.pop("update_step", None)
        else:
            self._inner.update_step = self._original_update_step
        if self._original_skip is not None or LOSS_SCALE_SKIP_METHOD in (
                self._optimizer.__dict__):
            if self._original_skip is None:
                self._optimizer.__dict__.pop(LOSS_SCALE_SKIP_METHOD, None)
            else:
                setattr(self._optimizer, LOSS_SCALE_SKIP_METHOD,
                        self._original_skip)
        # Drop the train function traced with the hook; Keras rebuilds it.
        self._model.train_function = None

    def _create_accumulators(self, variables, capacity):
        strategy = self._inner._distribution_strategy
        self._variables = variables
        self._capacity = capacity
        sums, sums_abs, sums_sq, counts = [], [], [], []
        with strategy.scope():
            for variable in variables:
                plain = _plain_variable(variable)
                shape = tuple(variable.shape)
                with strategy.extended.colocate_vars_with(plain):
                    sums.append(self._zeros(shape, "sum"))
                    sums_abs.append(self._zeros(shape, "sum_abs"))
                    sums_sq.append(self._zeros(shape, "sum_sq"))
                    counts.append(self._zeros((), "steps"))
            # One extra row collects the steps beyond the capacity.
            self._step_sq = self._zeros((capacity + 1,), "step_sq")
            self._step_max = self._zeros((capacity + 1,), "step_max")
            self._epoch_start = tf.Variable(
                tf.constant(0, tf.int64), trainable=False,
                name="tb_gradients_epoch_start")
            self._skipped = self._zeros((), "skipped")
        self._sums, self._sums_abs, self._sums_sq = sums, sums_abs, sums_sq
        self._counts = counts
        self._snapshot = None

    @staticmethod
    def _zeros(shape, name):
        return tf.Variable(tf.zeros(shape, tf.float32), trainable=False,
                           name=f"tb_gradients_{name}")

    def _wrap_optimizer(self):
        inner = self._inner
        self._original_update_step = inner.__dict__.get("update_step")
        original = inner.update_step

        def update_step(gradient, variable, learning_rate):
            if gradient is not None:
                self._record(gradient, variable)
            return original(gradient, variable, learning_rate)

        inner.update_step = update_step

        if inner is not self._optimizer:
            outer = self._optimizer
            self._original_skip = outer.__dict__.get(LOSS_SCALE_SKIP_METHOD)
            original_skip = getattr(outer, LOSS_SCALE_SKIP_METHOD)

            def handle_non_finite_grads(*args, **kwargs):
                self._skipped.assign_add(1.0)
                return original_skip(*args, **kwargs)

            setattr(outer, LOSS_SCALE_SKIP_METHOD, handle_non_finite_grads)

    def _record(self, gradient, variable):
        """Graph ops adding one variable's gradient of one step."""
        index = self._inner._get_variable_index(variable)
        step = tf.cast(tf.convert_to_tensor(self._inner.iterations), tf.int64)
        row = tf.clip_by_value(step - self._epoch_start, 0, self._capacity)
        row = tf.reshape(tf.cast(row, tf.int32), [1])
        if isinstance(gradient, tf.IndexedSlices):
            # Duplicate indices are summed first: the step's gradient of a
            # row is their sum, and |sum| is what enters sum |g|.
            unique, position = tf.unique(gradient.indices)
            values = tf.math.unsorted_segment_sum(
                tf.cast(gradient.values, tf.float32), position,
                tf.shape(unique)[0])
            self._sums[index].scatter_add(tf.IndexedSlices(values, unique))
            self._sums_abs[index].scatter_add(
                tf.IndexedSlices(tf.abs(values), unique))
            self._sums_sq[index].scatter_add(
                tf.IndexedSlices(tf.square(values), unique))
        else:
            values = tf.cast(gradient, tf.float32)
            self._sums[index].assign_add(values)
            self._sums_abs[index].assign_add(tf.abs(values))
            self._sums_sq[index].assign_add(tf.square(values))
        self._counts[index].assign_add(1.0)
        square = tf.reshape(tf.reduce_sum(tf.square(values)), [1])
        largest = tf.reshape(tf.reduce_max(tf.abs(values)), [1])
        self._step_sq.scatter_add(tf.IndexedSlices(square, row))
        self._step_max.scatter_max(tf.IndexedSlices(largest, row))

    def _all_accumulators(self):
        return (self._sums + self._sums_abs + self._sums_sq + self._counts
                + [self._step_sq, self._step_max, self._skipped])

    def _snapshot_and_reset_fn(self):
        """One compiled call that reads every accumulator, then zeroes it.

        Per epoch this replaces a few eager reads and assigns per variable
        (each a Python round trip) with a single function call, and marks
        the optimizer step the next epoch starts at.
        """
        accumulators = self._all_accumulators()
        inner = self._inner

        @tf.function
        def snapshot_and_reset():
            values = [tf.identity(a) for a in accumulators]
            iterations = tf.cast(tf.convert_to_tensor(inner.iterations),
                                 tf.int64)
            start = tf.identity(self._epoch_start)
            with tf.control_dependencies(values + [start]):
                for accumulator in accumulators:
                    accumulator.assign(tf.zeros_like(accumulator))
                self._epoch_start.assign(iterations)
            return values, iterations - start

        return snapshot_and_reset

    def begin_epoch(self):
        """Starts the epoch's sums from zero at the current optimizer step.

        `read` already leaves them so; this also covers steps taken between
        `attach` (or the last read) and the epoch's start.
        """
        if self._snapshot is None:
            self._snapshot = self._snapshot_and_reset_fn()
        if not self._fresh:
            self._snapshot()
        self._fresh = False

    def read(self):
        """The epoch's sums as numpy, and a fresh start for the next epoch.

        Returns:
          dict with ``sum``, ``sum_abs``, ``sum_sq`` (lists of float32 arrays
          in variable order), ``steps`` (list of floats), ``step_table``
          (``(n, 2)`` float64 of per-step L2 norm and max |g| for the n
          applied steps kept), ``skipped_steps`` (float).
        """
        if self._snapshot is None:
            self._snapshot = self._snapshot_and_reset_fn()
        values, applied = self._snapshot()
        self._fresh = True
        values = [v.numpy() for v in values]
        count = len(self._variables)
        kept = max(0, min(int(applied.numpy()), self._capacity))
        step_sq, step_max, skipped = values[4 * count:]
        return {
            "sum": values[:count],
            "sum_abs": values[count:2 * count],
            "sum_sq": values[2 * count:3 * count],
            "steps": [float(v) for v in values[3 * count:4 * count]],
            "step_table": np.stack([
                np.sqrt(step_sq[:kept].astype(np.float64)),
                step_max[:kept].astype(np.float64)], axis=1),
            "skipped_steps": float(skipped),
        }


def _batches_from_arrays(data, batch_size):
    """Splits ``(x, y[, sample_weight])`` arrays into batches."""
    data = tuple(data)
    if len(data) not in (2, 3):
        raise ValueError(
            "probe_data must be (x, y) or (x, y, sample_weight). Received: "
            f"a tuple of {len(data)} elements")
    lengths = {int(np.shape(a)[0]) for a in tf.nest.flatten(data)
               if a is not None}
    if len(lengths) != 1:
        raise ValueError(
            "probe_data arrays must all have the same number of samples. "
            f"Received: lengths {sorted(lengths)}")
    total = lengths.pop()
    if total == 0:
        raise ValueError("probe_data holds no samples. Received: 0 samples")
    batches = []
    for start in range(0, total, batch_size):
        batches.append(tf.nest.map_structure(
            lambda a: None if a is None else np.asarray(a)[start:start + batch_size],
            data))
    return batches


def _batches_from_dataset(dataset, max_batches):
    batches = []
    for element in dataset.take(max_batches):
        if not isinstance(element, (tuple, list)) or len(element) not in (2, 3):
            raise ValueError(
                "probe_data datasets must yield (x, y) or (x, y, "
                f"sample_weight) batches. Received: an element {element!r:.200}")
        batches.append(tuple(element))
    if not batches:
        raise ValueError("probe_data is an empty dataset. Received: 0 batches")
    return batches


def probe_batches(probe_data, batch_size, max_batches):
    """Materialises probe data once as a list of batches.

    Arrays are used whole (split into ``batch_size`` batches); a
    ``tf.data.Dataset`` is assumed batched and at most ``max_batches`` of its
    batches are used, the same ones every epoch.
    """
    if isinstance(probe_data, tf.data.Dataset):
        return _batches_from_dataset(probe_data, max_batches)
    if isinstance(probe_data, (tuple, list)):
        return _batches_from_arrays(probe_data, batch_size)
    raise TypeError(
        "probe_data must be a tuple (x, y) or (x, y, sample_weight) of arrays "
        "or a tf.data.Dataset yielding such batches. Received: "
        f"probe_data of type {type(probe_data).__name__}")


def _batch_size(batch):
    return int(tf.shape(tf.nest.flatten(batch[0])[0])[0])


class ProbeGradients:
    """Gradient of the loss on probe data at the current weights.

    The probe gradient is the sample-count-weighted mean of the batch
    gradients of ``model.compute_loss`` (which includes regularisation
    losses), computed in inference mode (``training=False``: no dropout,
    batch-norm moving statistics), so it is a deterministic function of the
    weights.
    """

    def __init__(self, model, batches):
        self._model = model
        self._batches = batches
        self._function = None

    @property
    def batches(self):
        return self._batches

    def _gradient_function(self, variables, extra_targets_fn=None):
        model = self._model

        @tf.function(reduce_retracing=True)
        def gradients(x, y, sample_weight):
            with tf.GradientTape() as tape:
                y_pred = model(x, training=False)
                loss = model.compute_loss(
                    x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                    training=False)
            grads = tape.gradient(loss, [_plain_variable(v) for v in variables])
            return [tf.zeros(v.shape, tf.float32) if g is None else
                    tf.cast(tf.convert_to_tensor(g), tf.float32)
                    for g, v in zip(grads, variables)]

        return gradients

    def compute(self, variables):
        """Probe gradient of each variable, as float64 numpy arrays."""
        if self._function is None:
            self._function = self._gradient_function(variables)
        totals = None
        count = 0
        for batch in self._batches:
            x, y = batch[0], batch[1]
            sample_weight = batch[2] if len(batch) > 2 else None
            n = _batch_size(batch)
            grads = self._function(x, y, sample_weight)
            grads = [g.numpy().astype(np.float64) * n for g in grads]
            totals = grads if totals is None else [
                t + g for t, g in zip(totals, grads)]
            count += n
        return [t / count for t in totals]
