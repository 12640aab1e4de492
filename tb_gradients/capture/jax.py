"""Getting gradients out of Keras on the JAX backend.

Keras's JAX train step is a pure, jitted function of the train state
(``train_step(state, data) -> (logs, state)``), so the window sums cannot
be variables the step updates in place, as on TensorFlow
(`capture.tensorflow`).
Instead ``JaxTrainingCapture`` owns them as a JAX pytree (``accumulators``)
and installs its own jitted step, ``(state, accumulators, data) -> (logs,
state, accumulators)``, both donated, that calls Keras's ``train_step``
with the optimizer's ``_backend_update_step`` wrapped: the wrapper sees
every gradient the optimizer applies (all-reduced across devices under
`keras.distribution.DataParallel`, clipped, unscaled by a
``LossScaleOptimizer``, averaged over ``gradient_accumulation_steps``),
exactly where the TensorFlow hook does, and returns the new accumulators
through the trace. They are not Keras variables: the model's and the
optimizer's saved files are those saved without the callback.

Per step and variable it adds ``g`` to the window sum (stacked by shape as
on TensorFlow, `window.layout.group_by_shape`), and one row per variable of
``(1, ‖g‖₁, ‖g‖₂²)`` to the window scalars. JAX computes in float32 here
(x64 off), so the window scalars are Kahan-compensated; the host combines
them in float64. At a window's end the JAX window-end kernel
(`window.kernels.jax`) reads the sums where they are, and `begin_window`
starts new arrays, so the donated buffers are never the ones the kernel
reads. The private Keras names this
relies on are listed, with why, in `compat.jax`.

``JaxProbeGradients`` and ``JaxTimestepGradients`` are the probe and the
timestep gradients through Keras's stateless calls and `jax.grad`.
"""

import jax
import jax.numpy as jnp
import keras
import numpy as np
from keras.src import backend as keras_backend

from tb_gradients import distribution
from tb_gradients.capture import base
from tb_gradients.compat import jax as private
from tb_gradients.window import layout
from tb_gradients.window.kernels.jax import filled
from tb_gradients.window.kernels.jax import local_array


def to_host(value):
    """A numpy copy of a (replicated) JAX array, or of anything numpy
    reads."""
    if isinstance(value, jax.Array):
        return np.array(local_array(value))
    return np.asarray(value)


def _replicated(sharding):
    """The sharding of a replicated value on the devices of ``sharding``."""
    if isinstance(sharding, jax.sharding.NamedSharding):
        return jax.sharding.NamedSharding(sharding.mesh,
                                          jax.sharding.PartitionSpec())
    return sharding


def _placed(host, sharding):
    """A host array placed with ``sharding`` (every process builds its own
    part, so this works with several processes).

    Without a distribution the array is left uncommitted, like Keras's own
    state: a committed input would make the train step's outputs, and so
    Keras's state, committed after the first step, and the step would be
    compiled again for them (and again each epoch, for the metric
    variables Keras resets uncommitted).
    """
    host = np.array(host, order="C")  # keeps a 0-d array 0-d
    if keras.distribution.distribution() is None:
        return jnp.asarray(host)
    return jax.make_array_from_callback(host.shape, sharding,
                                        lambda index: host[index])


def _filled(shape, dtype, value, sharding):
    """A new array of ``value`` made on the devices of ``sharding`` (no
    host array of its size); uncommitted without a distribution, as
    `_placed`."""
    if keras.distribution.distribution() is None:
        return filled(shape, dtype, value)
    return jnp.full(shape, value, dtype=dtype, device=sharding)


def _copy(array):
    """A new buffer with the same value and sharding (for reads that must
    outlive the next, donating, step)."""
    return jnp.array(array, copy=True)


def _int32(value):
    """A Keras variable's or a tensor's value as an int32 JAX array (traced
    inside the train step)."""
    return jnp.asarray(getattr(value, "value", value)).astype(jnp.int32)


# Gradients of at most this many elements have their per-step figures
# reduced together, as segments of their concatenation.
SMALL_GRADIENT = 4096


def step_figures(flats):
    """``(‖g‖₁, ‖g‖₂², max |g|)`` of each flat gradient, as three
    ``(len(flats),)`` arrays (traced inside the train step).

    The small gradients (at most `SMALL_GRADIENT` elements: biases, norm
    scales, the many small kernels of a deep stack) are reduced as
    segments of their concatenation: three reductions for all of them,
    not three per variable (the train step's program, and its compile
    time, no longer grow by three reductions per variable). Each large
    gradient is reduced alone, each figure behind an optimisation barrier:
    XLA:CPU would otherwise fuse the three reductions of one array into
    one loop, which runs at a fraction of memory speed (bench/jax_step.py).
    """
    small = [n for n, flat in enumerate(flats) if flat.size <= SMALL_GRADIENT]
    large = [n for n, flat in enumerate(flats) if flat.size > SMALL_GRADIENT]
    parts = []
    if small:
        segment = layout.segment_ids([flats[n].size for n in small])
        values = jnp.concatenate([flats[n] for n in small])
        absolute = jnp.abs(values)
        parts.append(tuple(function(data, segment, len(small),
                                    indices_are_sorted=True)
                           for function, data in (
                               (jax.ops.segment_sum, absolute),
                               (jax.ops.segment_sum, jnp.square(values)),
                               (jax.ops.segment_max, absolute))))
    if large:
        figures = []
        for n in large:
            flat = flats[n]
            second = jax.lax.optimization_barrier(flat)
            third = jax.lax.optimization_barrier(second)
            figures.append((jnp.sum(jnp.abs(flat)),
                            jnp.sum(jnp.square(second)),
                            jnp.max(jnp.abs(third))))
        parts.append(tuple(jnp.stack(column) for column in zip(*figures)))
    order = np.argsort(np.array(small + large))
    return tuple(jnp.concatenate(column)[order] for column in zip(*parts))


class _Accumulate:
    """The per-step additions, traced inside the train step.

    Lives only while the capture's step is traced: `values` holds the
    accumulators as traced inputs, `result` the new ones.
    """

    def __init__(self, values):
        self.values = values
        self.result = None


class JaxTrainingCapture(base.OwnedAccumulatorCapture):
    """Per-window sums of the applied gradients, on the JAX backend.

    The same interface as `capture.base.TrainingCapture`, which the
    callback uses on TensorFlow.
    """

    MODEL_ATTRIBUTE = "_tb_gradients_jax_capture"

    def __init__(self, model):
        super().__init__(model)
        self.accumulators = None
        self._tracing = None
        self._plain_function = None
        self._step = None
        self._step_key = None
        self._sharding = None

    # -- what the callback reads ---------------------------------------------

    def stacked_window_sums(self):
        """The window sums as ``(count, size)`` JAX arrays (`begin_window`
        must follow before the next step, which donates them)."""
        return list(self.accumulators["sums"])

    @property
    def window_scalars(self):
        """``(variables, 3)`` float64 `WINDOW_SCALARS` (has ``numpy()``)."""
        return base.HostArray(self._combined_scalars())

    def _combined_scalars(self):
        total = to_host(self.accumulators["scalars"])
        lost = to_host(self.accumulators["scalars_lost"])
        return total.astype(np.float64) - lost.astype(np.float64)

    def first_nonfinite_steps(self):
        return to_host(
            self.accumulators["first_nonfinite"]).astype(np.float64)

    def read_steps(self):
        values = self.accumulators
        applied = int(to_host(values["iterations"])) - int(
            to_host(values["start"]))
        kept = max(0, min(applied, self._capacity))
        table = np.stack([
            np.sqrt(to_host(values["step_sq"])[:kept].astype(
                np.float64)),
            to_host(values["step_max"])[:kept].astype(np.float64)],
            axis=1)
        return table, float(to_host(values["skipped"]))

    # -- attaching -----------------------------------------------------------

    def attach(self, steps_per_epoch=None):
        if self._attached:
            return
        model = self._model
        distribution.check_distribution()
        variables, capacity = self._bind_optimizer("jax", steps_per_epoch)
        if self._needs_layout(variables, capacity):
            self._create_accumulators(variables, capacity)
        self._wrap_optimizer()
        self._attached = True
        self._plain_function = model.train_function
        model.train_function = model._make_function(self._python_step)

    def detach(self):
        if not self._attached:
            return
        self._attached = False
        self._unpatch()
        self._model.train_function = self._plain_function
        self._plain_function = None

    def _create_accumulators(self, variables, capacity):
        for variable in variables:
            sharding = variable.value.sharding
            if not sharding.is_fully_replicated:
                raise ValueError(
                    "GradientTensorBoard on JAX needs every trainable "
                    "variable replicated on every device (keras.distribution"
                    f".DataParallel). Received: variable {variable.path!r} "
                    f"with sharding {sharding}")
        self._lay_out(variables, capacity)
        self._sharding = _replicated(variables[0].value.sharding)
        self.accumulators = self._zeros()
        self._step = self._step_key = None

    def _zeros(self, first_nonfinite=None):
        sharding, count = self._sharding, len(self._variables)
        sizes = [int(np.prod(self._variables[g[0]].shape, dtype=np.int64))
                 for g in self._groups]
        values = {
            "sums": [_filled((len(group), size), np.float32, 0, sharding)
                     for group, size in zip(self._groups, sizes)],
            "scalars": _filled((count, 3), np.float32, 0, sharding),
            "scalars_lost": _filled((count, 3), np.float32, 0, sharding),
            # one extra row collects the steps beyond the capacity
            "step_sq": _filled((self._capacity + 1,), np.float32, 0,
                               sharding),
            "step_max": _filled((self._capacity + 1,), np.float32, 0,
                                sharding),
            "skipped": _filled((), np.float32, 0, sharding),
            "start": _filled((), np.int32, 0, sharding),
            "iterations": _filled((), np.int32, 0, sharding),
            "first_nonfinite": first_nonfinite if first_nonfinite is not None
            else _filled((count,), np.int32, -1, sharding),
        }
        return values

    def _wrap_optimizer(self):
        inner, outer = self._inner, self._optimizer
        original_update = getattr(inner, private.UPDATE_METHOD)

        def backend_update_step(grads, trainable_variables, learning_rate):
            tracing = self._tracing
            if tracing is not None:
                tracing.result = self._add_step(
                    tracing.values, list(grads), list(trainable_variables))
            return original_update(grads, trainable_variables, learning_rate)

        self._patch(inner, private.UPDATE_METHOD, backend_update_step)
        if inner is outer:
            return
        # LossScaleOptimizer: the inner update runs in one branch of a
        # `lax.cond`; the accumulators leave both branches as extra
        # optimizer-variable outputs.
        own = len(outer.variables)
        original_finite = outer._stateless_handle_finite_grads
        original_skip = outer._stateless_handle_non_finite_grads
        original_apply = outer.stateless_apply

        def handle_finite_grads(optimizer_variables, grads,
                                trainable_variables):
            new_trainable, new_optimizer = original_finite(
                optimizer_variables, grads, trainable_variables)
            result = self._tracing.result or self._tracing.values
            return new_trainable, list(new_optimizer) + jax.tree.leaves(
                result)

        def handle_non_finite_grads(optimizer_variables, trainable_variables):
            new_trainable, new_optimizer = original_skip(
                optimizer_variables, trainable_variables)
            values = dict(self._tracing.values)
            values["skipped"] = values["skipped"] + 1.0
            return new_trainable, list(new_optimizer) + jax.tree.leaves(values)

        def stateless_apply(optimizer_variables, grads, trainable_variables):
            new_trainable, new_optimizer = original_apply(
                optimizer_variables, grads, trainable_variables)
            tracing = self._tracing
            if tracing is None:
                return new_trainable, new_optimizer
            tracing.result = jax.tree.unflatten(
                jax.tree.structure(tracing.values), list(new_optimizer[own:]))
            return new_trainable, list(new_optimizer[:own])

        self._patch(outer, private.LOSS_SCALE_OPTIMIZER[0], handle_finite_grads)
        self._patch(outer, private.LOSS_SCALE_OPTIMIZER[1], handle_non_finite_grads)
        self._patch(outer, private.LOSS_SCALE_OPTIMIZER[2], stateless_apply)

    # -- the step ------------------------------------------------------------

    def _add_step(self, values, grads, variables):
        """The accumulators after one step's gradients (traced).

        Per group of stacked variables, one ``Σg += g``; per variable
        ``‖g‖₁``, ``‖g‖₂²`` and ``max |g|`` (`step_figures`); then one
        (variables, 3) add and two writes to the per-step table.
        """
        inner = self._inner
        # the optimizer's step: with gradient accumulation, the number of
        # updates so far (`iterations` divides the micro-steps)
        iterations = _int32(inner.iterations)
        steps = inner.gradient_accumulation_steps
        applied = None
        if steps:
            # the optimizer updates (and the TensorFlow hook records) only
            # every `steps` micro-steps
            applied = (_int32(inner._iterations) + 1) % steps == 0
        indices, flats, by_group = [], [], {}
        for gradient, variable in zip(grads, variables):
            if gradient is None:
                continue
            index = inner._get_variable_index(variable)
            number, row = self._slot[index]
            gradient = gradient.astype(jnp.float32)
            if applied is not None:
                gradient = jnp.where(applied, gradient, 0.0)
            indices.append(index)
            flats.append(gradient.reshape(-1))
            by_group.setdefault(number, {})[row] = flats[-1]
        if not indices:
            return values
        sums = list(values["sums"])
        for number, rows in by_group.items():
            count = sums[number].shape[0]
            if len(rows) == count:  # one add for the group
                sums[number] = sums[number] + jnp.stack(
                    [rows[row] for row in range(count)])
            else:
                for row, flat in rows.items():
                    sums[number] = sums[number].at[row].add(flat)
        l1, sq, maxima = step_figures(flats)
        rows = jnp.stack([jnp.ones_like(l1), l1, sq], axis=1)
        if applied is not None:
            rows = jnp.where(applied, rows, 0.0)
        positions = np.asarray(indices)
        # Kahan: the float32 window scalars keep what each add rounds off
        if indices == list(range(len(self._variables))):
            update = rows
        else:
            update = jnp.zeros_like(values["scalars"]).at[positions].set(rows)
        corrected = update - values["scalars_lost"]
        total = values["scalars"] + corrected
        lost = (total - values["scalars"]) - corrected
        first = values["first_nonfinite"]
        known = first[positions]
        new = jnp.logical_and(known < 0, ~jnp.isfinite(rows[:, 1]))
        if applied is not None:
            new = jnp.logical_and(new, applied)
        first = first.at[positions].set(jnp.where(new, iterations, known))
        row = jnp.clip(iterations - values["start"], 0, self._capacity)
        step_max = jnp.max(maxima)
        result = dict(values, sums=sums, scalars=total, scalars_lost=lost,
                      first_nonfinite=first,
                      step_sq=values["step_sq"].at[row].add(jnp.sum(
                          rows[:, 2])),
                      step_max=values["step_max"].at[row].max(step_max),
                      iterations=iterations + 1 if applied is None else
                      jnp.where(applied, iterations + 1,
                                values["iterations"]))
        return result

    def _step_key_now(self):
        model = self._model
        distribution = keras.distribution.distribution()
        return (id(model.optimizer), id(getattr(model, "_compile_loss", None)),
                id(distribution), model.jit_compile, model.run_eagerly,
                tuple(id(v) for v in self._variables))

    def _compiled_step(self):
        key = self._step_key_now()
        if self._step is not None and self._step_key == key:
            return self._step
        model = self._model

        def step(state, values, data):
            self._tracing = _Accumulate(values)
            try:
                logs, state = model.train_step(state, data)
                result = self._tracing.result
            finally:
                self._tracing = None
            return logs, state, values if result is None else result

        if model.run_eagerly or not model.jit_compile:
            compiled = step
        else:
            out_shardings = None
            if keras.distribution.distribution() is not None:
                out_shardings = (None, model._get_state_sharding_spec(),
                                 jax.tree.map(lambda a: a.sharding,
                                              self.accumulators))
            compiled = jax.jit(step, donate_argnums=(0, 1),
                               out_shardings=out_shardings)
        self._step, self._step_key = compiled, key
        return compiled

    def _python_step(self, state, data):
        if self._step is None:
            self._compiled_step()
        logs, state, self.accumulators = self._step(
            state, self.accumulators, data)
        return logs, state

    # -- windows -------------------------------------------------------------

    def _optimizer_iterations(self):
        """The optimizer's step now (a copy, on the accumulators' devices)."""
        self._model.jax_state_sync()
        return np.asarray(to_host(_int32(
            self._inner.iterations))).astype(np.int32)

    def begin_window(self):
        """New zero accumulators (the run's first non-finite steps kept),
        starting at the optimizer's current step."""
        self._compiled_step()
        iterations = self._optimizer_iterations()
        values = self._zeros(first_nonfinite=self.accumulators[
            "first_nonfinite"])
        values["start"] = _filled((), np.int32, iterations, self._sharding)
        values["iterations"] = _filled((), np.int32, iterations,
                                       self._sharding)
        self.accumulators = values

    def reset_run(self):
        self.accumulators = dict(self.accumulators, first_nonfinite=_filled(
            (len(self._variables),), np.int32, -1, self._sharding))

    def run_arrays(self):
        return iter([("first_nonfinite", self.first_nonfinite_steps())])

    def load_run_arrays(self, arrays):
        array = self._checked_first_nonfinite(arrays)
        self.accumulators = dict(self.accumulators, first_nonfinite=_placed(
            np.asarray(array, np.int32), self._sharding))

    def open_window_arrays(self):
        values = self.accumulators
        arrays = [(f"sum/{n}", to_host(array).reshape(
            self._saved_sum_shape(n)))
            for n, array in enumerate(values["sums"])]
        arrays += [
            ("scalars", self._combined_scalars()),
            ("step_sq", to_host(values["step_sq"])),
            ("step_max", to_host(values["step_max"])),
            ("skipped", to_host(values["skipped"])),
            ("start", np.int64(to_host(values["start"]))),
        ]
        return iter(arrays)

    def load_open_window_arrays(self, arrays):
        self._check_open_window(arrays)
        sharding = self._sharding

        def placed(array, dtype):
            return _placed(np.asarray(array, dtype), sharding)

        values = dict(self.accumulators)
        values["sums"] = [placed(arrays[f"sum/{n}"].reshape(len(group), -1),
                                 np.float32)
                          for n, group in enumerate(self._groups)]
        values["scalars"] = placed(arrays["scalars"], np.float32)
        values["scalars_lost"] = placed(
            (arrays["scalars"].astype(np.float32).astype(np.float64)
             - arrays["scalars"]), np.float32)
        for name in ("step_sq", "step_max", "skipped"):
            values[name] = placed(arrays[name], np.float32)
        values["start"] = placed(arrays["start"], np.int32)
        values["iterations"] = placed(self._optimizer_iterations(), np.int32)
        self.accumulators = values


def _local_state(model):
    """The model's trainable, non-trainable and metric values, each on one
    device of this process: the probe and the timestep gradients run on
    the chief alone, without the other processes."""
    model.jax_state_sync()
    return tuple([local_array(v.value) for v in variables]
                 for variables in (model.trainable_variables,
                                   model.non_trainable_variables,
                                   model.metrics_variables))


def _host_batch(batch):
    return tuple(None if part is None else keras.tree.map_structure(
        np.asarray, part) for part in batch)


class JaxProbeGradients:
    """`capture.tensorflow.ProbeGradients` on the JAX backend: `jax.grad` of
    Keras's
    stateless loss (regularisation included) in inference mode."""

    def __init__(self, model, batches):
        self._model = model
        self._batches = [_host_batch(batch) for batch in batches]
        self._function = None

    @property
    def batches(self):
        return self._batches

    def _gradient_function(self):
        model = self._model

        def loss(trainable, non_trainable, metrics, x, y, sample_weight):
            value, _ = model.compute_loss_and_updates(
                trainable, non_trainable, metrics, x, y, sample_weight,
                training=False)
            return value

        return jax.jit(jax.grad(loss))

    def compute(self, variables):
        """Probe gradient of each of ``variables`` (the model's trainable
        variables), as float32 JAX arrays on one device of this process."""
        model = self._model
        if self._function is None:
            self._function = self._gradient_function()
        trainable, non_trainable, metrics = _local_state(model)
        totals, count = None, 0
        for batch in self._batches:
            sample_weight = batch[2] if len(batch) > 2 else None
            n = int(np.shape(keras.tree.flatten(batch[0])[0])[0])
            grads = self._function(trainable, non_trainable, metrics,
                                   batch[0], batch[1], sample_weight)
            grads = [g.astype(jnp.float32) * np.float32(n) for g in grads]
            totals = grads if totals is None else [
                t + g for t, g in zip(totals, grads)]
            count += n
        by_id = {id(v): i for i, v in enumerate(model.trainable_variables)}
        return [(_copy(totals[by_id[id(v)]] / np.float32(count)))
                for v in variables]


class JaxTimestepGradients:
    """`capture.tensorflow.TimestepGradients` on the JAX backend.

    d(loss)/d(output) of each watched layer: a zero perturbation is added
    to the layer's output (its ``call`` wrapped while the loss is traced)
    and the loss is differentiated with respect to it.
    """

    def __init__(self, model, layers, samples):
        self._model = model
        self.layers = layers
        self._samples = _host_batch(samples)
        self._function = None
        self._shapes = None
        self._masks = None

    def _outputs_and_masks(self):
        """The watched outputs' shapes and Keras masks on the samples (one
        eager forward pass of a tap model)."""
        model = self._model
        taps = [layer.output for layer in self.layers]
        tap = keras.Model(model.inputs, taps)
        model.jax_state_sync()
        outputs, _ = tap.stateless_call(
            [local_array(v.value) for v in tap.trainable_variables],
            [local_array(v.value)
             for v in tap.non_trainable_variables],
            self._samples[0], training=False)
        if len(self.layers) == 1 and not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        shapes, masks = [], []
        for output in outputs:
            shapes.append(tuple(output.shape))
            mask = keras_backend.get_keras_mask(output)
            masks.append(None if mask is None else np.asarray(mask))
        return shapes, masks

    def _build(self):
        model, layers = self._model, self.layers

        def loss(perturbations, trainable, non_trainable, metrics, x, y,
                 sample_weight):
            wrapped = []
            try:
                for layer, perturbation in zip(layers, perturbations):
                    original = layer.call

                    def call(*args, _original=original, _added=perturbation,
                             **kwargs):
                        return _original(*args, **kwargs) + _added

                    layer.call = call
                    wrapped.append(layer)
                value, _ = model.compute_loss_and_updates(
                    trainable, non_trainable, metrics, x, y, sample_weight,
                    training=False)
            finally:
                for layer in wrapped:
                    del layer.call
            return value

        return jax.jit(jax.grad(loss))

    def compute(self):
        model = self._model
        if self._function is None:
            self._shapes, self._masks = self._outputs_and_masks()
            self._function = self._build()
        x, y, sample_weight = self._samples
        grads = self._function(
            [jnp.zeros(shape, jnp.float32) for shape in self._shapes],
            *_local_state(model), x, y, sample_weight)
        return [(np.asarray(to_host(g), dtype=np.float64), mask)
                for g, mask in zip(grads, self._masks)]
