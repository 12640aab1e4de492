"""Getting gradients out of Keras: the optimizer hook and the probe.

``TrainingGradientCapture`` records the gradients the optimizer really
applies, inside the compiled train function, with no extra forward or
backward pass: it wraps the optimizer's per-variable ``update_step``, where
Keras (TensorFlow backend) has already all-reduced the gradients across
replicas, clipped them and, for a ``LossScaleOptimizer``, unscaled them. It
wraps the optimizer's ``_distributed_tf_update_step``, which receives every
such gradient of a step at once, so the per-step figures of all variables
are combined in a few operations rather than a few per variable.

``ProbeGradients`` computes the gradient of the loss on fixed probe data at
the current weights with a ``tf.GradientTape`` (one extra pass per logged
epoch).

The private Keras names this relies on are listed, with why, in
`compat.tensorflow`.
"""

import keras
import numpy as np
import tensorflow as tf
from keras.src import backend as keras_backend

from tb_gradients import compat
from tb_gradients import tracing
from tb_gradients.capture import base
from tb_gradients.capture import probe_data
from tb_gradients.compat import tensorflow as private
from tb_gradients.window import layout
from tb_gradients.window.kernels import tensorflow as tf_kernel


# Stacked groups of at most this many elements have their step's
# gradients stacked and reduced together (`_record_step`): above it, the
# copy would cost more than the per-variable ops it saves.
SMALL_GROUP_ELEMENTS = 1 << 16


class TrainingGradientCapture(base.TrainingCapture):
    """Per-window sums of the applied gradients, accumulated in the train step.

    One capture exists per model (`for_model`) and outlives callbacks and
    `fit` calls: the hooked train function is traced once per model and
    compile, reused by every later `fit` with a `GradientTensorBoard`, and
    swapped out for Keras's own train function after each such `fit`, so a
    `fit` without the callback neither records nor pays for the hook.

    Per trainable variable, float32 ``tf.Variable``s colocated with it hold
    ``Σ g`` over the window's steps (the only full-size state of the step),
    and a float64 vector the per-step scalars ``WINDOW_SCALARS`` (steps,
    ``Σ_i ‖g_i‖₁``, ``Σ_i ‖g_i‖₂²``). Per step, two buffers hold the squared
    global L2 norm and the largest ``|g|``. Window sums of variables of the
    same shape are stacked in one variable (`layout.group_by_shape`),
    so that the window end reads them without copies. None of these is an
    attribute tracked by the model or the optimizer, so checkpoints do not
    see them.
    """

    MODEL_ATTRIBUTE = "_tb_gradients_capture"

    def __init__(self, model):
        self._model = model
        self._variables = None
        self._groups = []
        self._window_sums = self._window_scalars = None
        self._step_sq = self._step_max = None
        self._window_start = None
        self._skipped = None
        self._capacity = 0
        self._attached = False
        self._optimizer = self._inner = None
        self._original_update_step = None
        self._original_skip = None
        self._plain_function = None
        self._hooked_function = None
        self._hooked_key = None
        self._reset = None
        self._step_read = None

    @property
    def window_sums(self):
        """``Σ g`` of the current window: one variable per group, ``(count,
        size)`` for a stacked group, the variable's own shape otherwise."""
        return list(self._window_sums)

    def stacked_window_sums(self):
        """The window sums as ``(count, size)`` tensors, one per group."""
        return [tf.reshape(v.read_value(), [len(group), -1])
                for v, group in zip(self._window_sums, self._groups)]

    @property
    def window_scalars(self):
        """``(variables, 3)`` float64 variable of the ``WINDOW_SCALARS``."""
        return self._window_scalars

    def _compile_key(self, variables):
        """What the hooked train function depends on.

        Objects are compared by identity (a new `compile` makes a new loss
        and often a new optimizer), settings by value.
        """
        model = self._model
        objects = (model.optimizer, getattr(model, "_compile_loss", None),
                   model.distribute_strategy, self._step_sq, *variables)
        settings = (model.jit_compile, model.steps_per_execution,
                    model.run_eagerly)
        return [id(o) for o in objects], settings, objects

    def _hooked_function_valid(self, key):
        if self._hooked_function is None:
            return False
        ids, settings, _ = self._hooked_key
        return ids == key[0] and settings == key[1]

    def attach(self, steps_per_epoch=None):
        """Wraps the optimizer and installs the hooked train function.

        Args:
          steps_per_epoch: steps per epoch if known, to size the per-step
            buffers.
        """
        if self._attached:
            return
        model = self._model
        self._optimizer = model.optimizer
        self._inner = base.inner_optimizer(model.optimizer)
        compat.check("tensorflow", self._model, self._optimizer, self._inner)
        if not self._optimizer.built:
            # Keras builds the optimizer lazily at its first step, the same
            # way; the accumulators need its variable list now.
            with self._inner._distribution_strategy.scope():
                self._optimizer.build(model.trainable_variables)
        variables = list(self._inner._trainable_variables)
        capacity = base.step_capacity(steps_per_epoch)
        if (self._variables is None
                or [id(v) for v in variables] != [id(v) for v in self._variables]
                or capacity > self._capacity):
            self._create_accumulators(variables, capacity)
        self._wrap_optimizer()
        self._attached = True
        self._plain_function = model.train_function
        key = self._compile_key(variables)
        if not self._hooked_function_valid(key):
            # The key keeps its objects alive, so an id is never reused.
            model.make_train_function(force=True)
            self._hooked_function = model.train_function
            self._hooked_key = key
            # they read the (possibly new) optimizer's step counter
            self._reset = self._step_read = None
        model.train_function = self._hooked_function

    def detach(self):
        """Undoes `attach`: Keras's own train function and optimizer again."""
        if not self._attached:
            return
        self._attached = False
        if self._original_update_step is None:
            self._inner.__dict__.pop(private.UPDATE_METHOD, None)
        else:
            setattr(self._inner, private.UPDATE_METHOD, self._original_update_step)
        if self._original_skip is not None or private.LOSS_SCALE_SKIP_METHOD in (
                self._optimizer.__dict__):
            if self._original_skip is None:
                self._optimizer.__dict__.pop(private.LOSS_SCALE_SKIP_METHOD, None)
            else:
                setattr(self._optimizer, private.LOSS_SCALE_SKIP_METHOD,
                        self._original_skip)
        self._original_update_step = self._original_skip = None
        self._model.train_function = self._plain_function
        self._plain_function = None

    def _create_accumulators(self, variables, capacity):
        strategy = self._inner._distribution_strategy
        self._variables = variables
        self._capacity = capacity
        self._groups = layout.group_by_shape(
            [v.shape for v in variables])
        self._slot = {}
        sums = []
        with strategy.scope():
            for number, group in enumerate(self._groups):
                first = variables[group[0]]
                shape = tuple(first.shape)
                if len(group) > 1:
                    shape = (len(group), int(np.prod(shape, dtype=np.int64)))
                with strategy.extended.colocate_vars_with(
                        tf_kernel.plain_variable(first)):
                    sums.append(self._zeros(shape, "sum"))
                for row, index in enumerate(group):
                    self._slot[index] = (number, row, len(group) > 1)
            scalars = self._zeros((len(variables), 3), "window_scalars",
                                  tf.float64)
            # One extra row collects the steps beyond the capacity.
            self._step_sq = self._zeros((capacity + 1,), "step_sq")
            self._step_max = self._zeros((capacity + 1,), "step_max")
            self._window_start = tf.Variable(
                tf.constant(0, tf.int64), trainable=False,
                name="tb_gradients_window_start")
            self._skipped = self._zeros((), "skipped")
            # not reset per window: the run's first non-finite step
            self._first_nonfinite = tf.Variable(
                tf.fill([len(variables)], tf.constant(-1.0, tf.float64)),
                trainable=False, name="tb_gradients_first_nonfinite")
        self._window_sums, self._window_scalars = sums, scalars
        self._reset = self._step_read = None
        self._hooked_function = self._hooked_key = None

    @staticmethod
    def _zeros(shape, name, dtype=tf.float32):
        return tf.Variable(tf.zeros(shape, dtype), trainable=False,
                           name=f"tb_gradients_{name}")

    def _wrap_optimizer(self):
        inner = self._inner
        self._original_update_step = inner.__dict__.get(private.UPDATE_METHOD)
        original = getattr(inner, private.UPDATE_METHOD)

        def distributed_update_step(distribution, grads_and_vars,
                                    learning_rate):
            grads_and_vars = list(grads_and_vars)
            self._record_step(distribution, grads_and_vars)
            return original(distribution, grads_and_vars, learning_rate)

        setattr(inner, private.UPDATE_METHOD, distributed_update_step)

        if inner is not self._optimizer:
            outer = self._optimizer
            self._original_skip = outer.__dict__.get(private.LOSS_SCALE_SKIP_METHOD)
            original_skip = getattr(outer, private.LOSS_SCALE_SKIP_METHOD)

            def handle_non_finite_grads(*args, **kwargs):
                self._skipped.assign_add(1.0)
                return original_skip(*args, **kwargs)

            setattr(outer, private.LOSS_SCALE_SKIP_METHOD, handle_non_finite_grads)

    def _record_step(self, distribution, grads_and_vars):
        """Graph ops adding one step's gradients.

        Per element of each gradient: one read of ``g`` for ``Σg += g``, one
        for ``|g|`` (``‖g‖₁``, ``max |g|``) and one for ``‖g‖₂²``. The
        gradients of a stacked group of small variables
        (`SMALL_GROUP_ELEMENTS`) are stacked and reduced together: a few
        ops per group instead of a few per variable (each op costs
        microseconds whatever its size: a deep stack of small layers paid
        more for them than for its own step). The per-variable scalars of
        all variables are then added with one scatter, and the step's row
        of the per-step table with two. Under a multi-replica strategy each
        variable is updated in its own ``extended.update`` context (where
        its copies live) instead.
        """
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        if not pairs:
            return
        if distribution.num_replicas_in_sync > 1:
            for gradient, variable in pairs:
                distribution.extended.update(
                    variable, self._record_replicated, args=(gradient,),
                    group=False)
            return
        by_index = {self._inner._get_variable_index(v): (g, v)
                    for g, v in pairs}
        figures = []
        for number, group in enumerate(self._groups):
            gradients = [by_index.get(index, (None, None))[0]
                         for index in group]
            if (len(group) < 2 or any(
                    g is None or isinstance(g, tf.IndexedSlices)
                    for g in gradients)
                    or self._window_sums[number].shape.num_elements()
                    > SMALL_GROUP_ELEMENTS):
                continue
            stacked = tf.reshape(
                tf.stack([tf.cast(g, tf.float32) for g in gradients]),
                self._window_sums[number].shape)
            self._window_sums[number].assign_add(stacked)
            absolute = tf.abs(stacked)
            figures.append((group, tf.reduce_sum(absolute, axis=1),
                            tf.reduce_sum(tf.square(stacked), axis=1),
                            tf.reduce_max(absolute, axis=1)))
            for index in group:
                del by_index[index]
        figures += [self._record_variable(g, v) for g, v in by_index.values()]
        self._add_step_figures(figures)

    def _record_replicated(self, variable, gradient):
        """`_record_step` for one variable, in its update context."""
        self._add_step_figures([self._record_variable(gradient, variable)])

    def _add_step_figures(self, figures):
        """Adds the per-variable scalars of one step (one scatter) and the
        step's row of the per-step table (two).

        Args:
          figures: ``(indices, ‖g‖₁, ‖g‖₂², max |g|)`` of a group of
            variables (vectors) or of one (`_record_variable`'s scalars).
        """
        indices, l1s, squares, maxima = [], [], [], []
        for index, l1, square, largest in figures:
            indices += list(index) if isinstance(index, list) else [index]
            l1s.append(tf.reshape(l1, [-1]))
            squares.append(tf.reshape(square, [-1]))
            maxima.append(tf.reshape(largest, [-1]))
        squares = tf.concat(squares, 0)
        positions = tf.constant(indices, tf.int32)
        l1s = tf.concat(l1s, 0)
        self._window_scalars.scatter_add(tf.IndexedSlices(
            tf.cast(tf.stack([tf.ones_like(squares), l1s, squares],
                             axis=1), tf.float64), positions))
        # ‖g‖₁ is not finite exactly when g held NaN or ±Inf (or its
        # elements summed past float32's range)
        step = tf.cast(tf.convert_to_tensor(self._inner.iterations),
                       tf.int64)
        first = tf.gather(self._first_nonfinite, positions)
        self._first_nonfinite.scatter_update(tf.IndexedSlices(tf.where(
            tf.logical_and(first < 0, tf.logical_not(tf.math.is_finite(l1s))),
            tf.cast(step, tf.float64), first), positions))
        row = self._step_row(step)
        self._step_sq.scatter_add(tf.IndexedSlices(
            tf.reshape(tf.reduce_sum(squares), [1]), row))
        # A NaN gradient's largest element is NaN, as its L2 norm is (and
        # as on JAX); `scatter_max` alone would drop the NaN.
        largest = tf.where(tf.reduce_any(tf.math.is_nan(l1s)),
                           tf.constant(np.nan, tf.float32),
                           tf.reduce_max(tf.concat(maxima, 0)))
        kept = tf.gather(self._step_max, row)
        self._step_max.scatter_update(tf.IndexedSlices(tf.where(
            tf.math.is_nan(kept) | tf.math.is_nan(largest),
            tf.constant(np.nan, tf.float32), tf.maximum(kept, largest)),
            row))

    def _step_row(self, step):
        """The per-step table's row of optimizer step ``step`` (int64; the
        last row collects the steps beyond the capacity)."""
        row = tf.clip_by_value(step - self._window_start, 0, self._capacity)
        return tf.reshape(tf.cast(row, tf.int32), [1])

    def _record_variable(self, gradient, variable):
        """Adds one variable's gradient to its window sum.

        Returns:
          ``(index, ‖g‖₁, ‖g‖₂², max |g|)`` of this step.
        """
        index = self._inner._get_variable_index(variable)
        number, row_in_group, stacked = self._slot[index]
        window_sum = self._window_sums[number]
        if isinstance(gradient, tf.IndexedSlices):
            # Duplicate indices are summed first: the step's gradient of a
            # row is their sum, and |sum| is what enters Σ|g|.
            unique, position = tf.unique(gradient.indices)
            values = tf.math.unsorted_segment_sum(
                tf.cast(gradient.values, tf.float32), position,
                tf.shape(unique)[0])
            if stacked:
                dense = tf.convert_to_tensor(tf.IndexedSlices(
                    values, unique, tf.shape(variable, out_type=unique.dtype)))
                window_sum.scatter_add(tf.IndexedSlices(
                    tf.reshape(dense, [1, -1]), [row_in_group]))
            else:
                window_sum.scatter_add(tf.IndexedSlices(values, unique))
        else:
            values = tf.cast(gradient, tf.float32)
            if stacked:
                window_sum.scatter_add(tf.IndexedSlices(
                    tf.reshape(values, [1, -1]), [row_in_group]))
            else:
                window_sum.assign_add(values)
        absolute = tf.abs(values)
        return (index, tf.reduce_sum(absolute), 2.0 * tf.nn.l2_loss(values),
                tf.reduce_max(absolute))

    def _reset_fn(self):
        """One compiled call zeroing the window's sums (traced once)."""
        resettable = self._window_sums + [self._window_scalars, self._step_sq,
                                          self._step_max, self._skipped]
        inner = self._inner
        start = self._window_start

        def reset():
            for accumulator in resettable:
                accumulator.assign(tf.zeros_like(accumulator),
                                   read_value=False)
            start.assign(tf.cast(tf.convert_to_tensor(inner.iterations),
                                 tf.int64), read_value=False)
            return True

        return tracing.TracedOnce(reset)

    def _step_read_fn(self):
        step_sq, step_max, skipped = self._step_sq, self._step_max, self._skipped
        inner = self._inner
        start = self._window_start

        def read():
            applied = tf.cast(tf.convert_to_tensor(inner.iterations),
                              tf.int64) - start
            return (tf.identity(step_sq), tf.identity(step_max),
                    tf.identity(skipped), applied)

        return tracing.TracedOnce(read)

    def _open_window_variables(self):
        named = [(f"sum/{number}", v)
                 for number, v in enumerate(self._window_sums)]
        return named + [("scalars", self._window_scalars),
                        ("step_sq", self._step_sq),
                        ("step_max", self._step_max),
                        ("skipped", self._skipped),
                        ("start", self._window_start)]

    def first_nonfinite_steps(self):
        """Per variable, the first optimizer step (0-based, the value of
        ``iterations`` before that update) whose applied gradient was not
        finite; -1 for none. Host array."""
        return self._first_nonfinite.numpy()

    def reset_run(self):
        """Forgets the run state (a new run starts with this model)."""
        self._first_nonfinite.assign(
            tf.fill(self._first_nonfinite.shape,
                    tf.constant(-1.0, tf.float64)))

    def run_arrays(self):
        """The state kept over the whole run, as ``(name, tensor)`` pairs
        read now (`resume`)."""
        return iter([("first_nonfinite", self._first_nonfinite.read_value())])

    def load_run_arrays(self, arrays):
        """Continues the run state saved by `run_arrays`; raises ValueError
        when it is missing or of another shape."""
        array = self._checked_first_nonfinite(arrays)
        self._first_nonfinite.assign(array.astype(np.float64))

    def open_window_arrays(self):
        """The open window's sums and per-step figures, as ``(name,
        tensor)`` pairs read now (`resume`, with step windows)."""
        return iter([(name, variable.read_value())
                     for name, variable in self._open_window_variables()])

    def load_open_window_arrays(self, arrays):
        """Continues the window saved by `open_window_arrays`.

        Raises ValueError (and assigns nothing) when a saved array is
        missing or of another shape or dtype.
        """
        self._check_open_window(arrays)
        for name, variable in self._open_window_variables():
            variable.assign(arrays[name])

    def begin_window(self):
        """Starts the window's sums from zero at the current optimizer step."""
        if self._reset is None:
            self._reset = self._reset_fn()
        self._reset()

    def read_steps(self):
        """The window's per-step table and skipped-step count, on the host.

        Returns:
          ``(step_table, skipped_steps)``: ``(n, 2)`` float64 per-step L2
          norm and max |g| for the n applied steps kept, and a float.
        """
        if self._step_read is None:
            self._step_read = self._step_read_fn()
        step_sq, step_max, skipped, applied = self._step_read()
        kept = max(0, min(int(applied.numpy()), self._capacity))
        table = np.stack([
            np.sqrt(step_sq.numpy()[:kept].astype(np.float64)),
            step_max.numpy()[:kept].astype(np.float64)], axis=1)
        return table, float(skipped.numpy())


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
            grads = tape.gradient(
                loss, [tf_kernel.plain_variable(v) for v in variables])
            return [tf.zeros(v.shape, tf.float32) if g is None else
                    tf.cast(tf.convert_to_tensor(g), tf.float32)
                    for g, v in zip(grads, variables)]

        return gradients

    def compute(self, variables):
        """Probe gradient of each variable, as float32 tensors on the device."""
        if self._function is None:
            self._function = self._gradient_function(variables)
        totals = None
        count = 0
        for batch in self._batches:
            x, y = batch[0], batch[1]
            sample_weight = batch[2] if len(batch) > 2 else None
            n = probe_data.batch_size(batch)
            grads = [g * float(n) for g in self._function(x, y, sample_weight)]
            totals = grads if totals is None else [
                t + g for t, g in zip(totals, grads)]
            count += n
        return [t / float(count) for t in totals]


class TimestepGradients:
    """d(loss)/d(output) of several layers in one GradientTape pass."""

    def __init__(self, model, layers, samples):
        """Builds the tap model.

        Args:
          model: a functional or Sequential Keras model.
          layers: from `find_layers`.
          samples: ``(x, y, sample_weight)`` of the probe samples to use.

        Raises:
          ValueError: the model has no symbolic graph to tap (a subclassed
            model), or a layer is used more than once.
        """
        self._model = model
        self.layers = layers
        self._samples = samples
        outputs = list(getattr(model, "outputs", None) or [])
        if not outputs:
            raise ValueError(
                "Timestep gradients need a functional or Sequential model "
                "(a subclassed model has no graph of layer outputs to tap). "
                f"Received: a {type(model).__name__}; pass "
                "timestep_layers=[] to turn them off")
        taps = []
        for layer in layers:
            try:
                taps.append(layer.output)
            except (AttributeError, ValueError) as error:
                raise ValueError(
                    f"Cannot record the output of layer {layer.name!r}: "
                    f"{error}. Received: timestep_layers item "
                    f"{layer.name!r}") from error
        self._output_count = len(outputs)
        self._tap_model = keras.Model(model.inputs, outputs + taps)
        self._function = None

    def _build(self):
        model, tap, count = self._model, self._tap_model, self._output_count

        @tf.function(reduce_retracing=True)
        def output_gradients(x, y, sample_weight):
            with tf.GradientTape() as tape:
                results = tap(x, training=False)
                y_pred = results[0] if count == 1 else results[:count]
                loss = model.compute_loss(x=x, y=y, y_pred=y_pred,
                                          sample_weight=sample_weight,
                                          training=False)
            outputs = results[count:]
            grads = tape.gradient(loss, outputs)
            masks = []
            for output in outputs:
                mask = keras_backend.get_keras_mask(output)
                masks.append(tf.zeros([0], tf.bool) if mask is None else mask)
            return grads, masks

        return output_gradients

    def compute(self):
        """``[(gradient ndarray, mask ndarray or None)]`` per layer.

        The gradient is that of the probe loss (mean over the samples used),
        so each sample's slice is 1/samples of its own loss's gradient.
        """
        if self._function is None:
            self._function = self._build()
        x, y, sample_weight = self._samples
        grads, masks = self._function(x, y, sample_weight)
        result = []
        for gradient, mask in zip(grads, masks):
            gradient = (np.zeros(1) if gradient is None
                        else np.asarray(gradient.numpy(), dtype=np.float64))
            mask = mask.numpy()
            result.append((gradient, mask if mask.size else None))
        return result
