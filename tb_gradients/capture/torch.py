"""Getting gradients out of Keras on the PyTorch backend.

Keras's PyTorch train step runs eagerly (``loss.backward()``, then
``optimizer.apply``), so the hook is simple: ``TorchTrainingCapture`` wraps
the inner optimizer's ``_backend_update_step``, which receives every
gradient the optimizer applies (clipped, unscaled by a
``LossScaleOptimizer``, averaged over ``gradient_accumulation_steps``; it
runs on update steps only), and adds them to torch tensors it owns, next to
the variables: ``Σg`` per variable (stacked by shape, as on the other
backends, `window.layout.group_by_shape`), one add per group, and
``‖g‖₁``, ``‖g‖₂²`` and ``max |g|`` of every variable (`step_figures`,
following a `StepPlan` made once per window). The window scalars are float64, as on
TensorFlow. At a window's end the torch window-end kernel
(`window.kernels.torch`) reads the sums where they are; `begin_window`
starts new tensors, so the kernel never reads a buffer the next step
writes. The private Keras names this relies on
are listed, with why, in `compat.torch`.

``TorchProbeGradients`` and ``TorchTimestepGradients`` are the probe and
the timestep gradients through `torch.autograd.grad`.
"""

import keras
import numpy as np
import torch
from keras.src import backend as keras_backend

from tb_gradients.capture import base
from tb_gradients.compat import torch as private
from tb_gradients.window import layout


def _host(value):
    """A numpy copy of a torch tensor, or of anything numpy reads."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    return np.asarray(value)


# Gradients of at most this many elements have their per-step figures
# reduced together, as segments of their concatenation.
SMALL_GRADIENT = 4096


class StepPlan:
    """What a step does with the gradients of a given list of variables,
    worked out once per window: the groups whose every row it updates
    (one add each), the other rows (one ``_foreach_add_``), the segments
    of the small gradients and the order of the figures.

    Args:
      indices: the optimizer's index of each variable, in step order.
      slot: index -> (group, row) of the window sums.
      sums: the window's sums, one ``(count, size)`` tensor per group.
      shapes: each variable's shape.
      device: the sums' device.
    """

    def __init__(self, indices, slot, sums, shapes, device):
        by_group = {}
        for n, index in enumerate(indices):
            number, row = slot[index]
            by_group.setdefault(number, {})[row] = n
        self.whole_groups, self.row_targets, self.row_sources = [], [], []
        for number, rows in by_group.items():
            if len(rows) == sums[number].shape[0]:
                self.whole_groups.append(
                    (number, [rows[row] for row in range(len(rows))]))
            else:
                for row, n in rows.items():
                    self.row_targets.append(sums[number][row])
                    self.row_sources.append(n)
        sizes = [int(np.prod(shape, dtype=np.int64)) for shape in shapes]
        self.small = [n for n, size in enumerate(sizes)
                      if size <= SMALL_GRADIENT]
        self.large = [n for n, size in enumerate(sizes)
                      if size > SMALL_GRADIENT]
        self.segments = torch.as_tensor(layout.segment_ids(
            [sizes[n] for n in self.small]).astype(np.int64), device=device)
        self.order = torch.as_tensor(np.argsort(self.small + self.large),
                                     device=device)
        self.positions = torch.tensor(indices, device=device)


def step_figures(flats, plan):
    """``(‖g‖₁, ‖g‖₂², max |g|)`` of each flat gradient, float64 tensors in
    step order. The small gradients (biases, norm scales, the many small
    kernels of a deep stack) as segments of their concatenation, a few
    calls for all of them (``_foreach_norm`` loops over them one by one on
    the CPU); each large one with ``_foreach_norm`` and, for its largest
    element, `torch.aminmax` (one vectorised pass, four times faster on the
    CPU than the infinity norm)."""
    columns = []
    if plan.small:
        values = torch.cat([flats[n] for n in plan.small])
        absolute = values.abs()
        count = len(plan.small)
        zeros = torch.zeros(count, dtype=values.dtype, device=values.device)
        columns.append((
            zeros.index_add(0, plan.segments, absolute),
            zeros.index_add(0, plan.segments, values * values),
            zeros.scatter_reduce(0, plan.segments, absolute, "amax",
                                 include_self=False)))
    if plan.large:
        large = [flats[n] for n in plan.large]
        l2 = torch.stack(torch._foreach_norm(large, 2))
        extremes = [torch.aminmax(g) for g in large]
        columns.append((
            torch.stack(torch._foreach_norm(large, 1)), l2 * l2,
            torch.stack([torch.maximum(high, -low)
                         for low, high in extremes])))
    return tuple(torch.cat(column).double()[plan.order]
                 for column in zip(*columns))


class TorchTrainingCapture(base.OwnedAccumulatorCapture):
    """Per-window sums of the applied gradients, on the PyTorch backend.

    The same interface as `capture.base.TrainingCapture`.
    """

    MODEL_ATTRIBUTE = "_tb_gradients_torch_capture"

    def __init__(self, model):
        super().__init__(model)
        self._values = None
        self._first_nonfinite = None

    def stacked_window_sums(self):
        return list(self._values["sums"])

    @property
    def window_scalars(self):
        return base.HostArray(_host(self._values["scalars"]))

    def first_nonfinite_steps(self):
        return _host(self._first_nonfinite).astype(np.float64)

    def read_steps(self):
        values = self._values
        applied = int(self._inner.iterations) - int(values["start"])
        kept = max(0, min(applied, self._capacity))
        table = np.stack([
            np.sqrt(_host(values["step_sq"])[:kept]),
            _host(values["step_max"])[:kept]], axis=1).astype(np.float64)
        return table, float(values["skipped"])

    def attach(self, steps_per_epoch=None):
        if self._attached:
            return
        variables, capacity = self._bind_optimizer("torch", steps_per_epoch)
        if self._needs_layout(variables, capacity):
            self._create(variables, capacity)
        self._wrap_optimizer()
        self._attached = True

    def detach(self):
        if not self._attached:
            return
        self._attached = False
        self._unpatch()

    def _create(self, variables, capacity):
        self._lay_out(variables, capacity)
        self._device = variables[0].value.device
        self._first_nonfinite = torch.full((len(variables),), -1,
                                           dtype=torch.int64,
                                           device=self._device)
        self._values = self._zeros(0)

    def _zeros(self, start):
        device = self._device
        sizes = [int(np.prod(self._variables[g[0]].shape, dtype=np.int64))
                 for g in self._groups]
        return {
            "sums": [torch.zeros((len(group), size), dtype=torch.float32,
                                 device=device)
                     for group, size in zip(self._groups, sizes)],
            "scalars": torch.zeros((len(self._variables), 3),
                                   dtype=torch.float64, device=device),
            "step_sq": torch.zeros(self._capacity + 1, dtype=torch.float64,
                                   device=device),
            "step_max": torch.zeros(self._capacity + 1, dtype=torch.float64,
                                    device=device),
            "skipped": 0.0,
            "start": int(start),
        }

    def _wrap_optimizer(self):
        inner, outer = self._inner, self._optimizer
        original = getattr(inner, private.UPDATE_METHOD)

        def backend_update_step(grads, trainable_variables, learning_rate):
            self._add_step(list(grads), list(trainable_variables))
            return original(grads, trainable_variables, learning_rate)

        self._patch(inner, private.UPDATE_METHOD, backend_update_step)
        if inner is not outer:
            original_skip = getattr(outer, private.LOSS_SCALE_SKIP_METHOD)

            def handle_non_finite_grads(*args, **kwargs):
                self._values["skipped"] += 1.0
                return original_skip(*args, **kwargs)

            self._patch(outer, private.LOSS_SCALE_SKIP_METHOD,
                        handle_non_finite_grads)

    @torch.no_grad()
    def _add_step(self, grads, variables):
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        if not pairs:
            return
        values = self._values
        gradients = [g.detach().to(torch.float32) for g, _ in pairs]
        plan = self._plan(tuple(id(v) for _, v in pairs),
                          [v for _, v in pairs])
        flats = [g.reshape(-1) for g in gradients]
        for number, rows in plan.whole_groups:  # one add per group
            sums = values["sums"][number]
            sums += (flats[rows[0]][None] if len(rows) == 1 else
                     torch.stack([flats[n] for n in rows]))
        if plan.row_targets:
            torch._foreach_add_(plan.row_targets,
                                [flats[n] for n in plan.row_sources])
        l1, sq, largest = step_figures(flats, plan)
        rows = torch.stack([torch.ones_like(l1), l1, sq], dim=1)
        positions = plan.positions
        values["scalars"].index_add_(0, positions, rows)
        step = int(self._inner.iterations)
        known = self._first_nonfinite[positions]
        new = (known < 0) & ~torch.isfinite(l1)
        self._first_nonfinite[positions] = torch.where(
            new, torch.full_like(known, step), known)
        row = min(max(step - values["start"], 0), self._capacity)
        values["step_sq"][row] += rows[:, 2].sum()
        # a NaN gradient's largest element is NaN (as its L2 norm)
        # (on the device: no host read of the step's figures)
        step_max = torch.where(torch.isnan(l1).any(),
                               torch.full_like(l1[0], float("nan")),
                               largest.max())
        values["step_max"][row] = torch.maximum(values["step_max"][row],
                                                step_max)

    def _plan(self, key, variables):
        """How a step's gradients are added and reduced (`StepPlan`), made
        once per window for the variables a step updates."""
        plans = self._values.setdefault("plans", {})
        if key not in plans:
            indices = [self._inner._get_variable_index(v) for v in variables]
            plans[key] = StepPlan(indices, self._slot, self._values["sums"],
                                  [tuple(v.shape) for v in variables],
                                  self._device)
        return plans[key]

    def begin_window(self):
        self._values = self._zeros(int(self._inner.iterations))

    def reset_run(self):
        self._first_nonfinite.fill_(-1)

    def run_arrays(self):
        return iter([("first_nonfinite", self.first_nonfinite_steps())])

    def load_run_arrays(self, arrays):
        array = self._checked_first_nonfinite(arrays)
        self._first_nonfinite = torch.as_tensor(
            np.asarray(array, np.int64), device=self._device)

    def open_window_arrays(self):
        values = self._values
        arrays = [(f"sum/{n}", _host(s).reshape(self._saved_sum_shape(n)))
                  for n, s in enumerate(values["sums"])]
        arrays += [
            ("scalars", _host(values["scalars"])),
            ("step_sq", _host(values["step_sq"]).astype(np.float32)),
            ("step_max", _host(values["step_max"]).astype(np.float32)),
            ("skipped", np.float32(values["skipped"])),
            ("start", np.int64(values["start"])),
        ]
        return iter(arrays)

    def load_open_window_arrays(self, arrays):
        self._check_open_window(arrays)

        def placed(array, dtype):
            # a copy in torch's (aligned) memory
            return torch.tensor(np.asarray(array, dtype), device=self._device)

        values = self._zeros(int(arrays["start"]))
        values["sums"] = [placed(arrays[f"sum/{n}"].reshape(len(group), -1),
                                 np.float32)
                          for n, group in enumerate(self._groups)]
        values["scalars"] = placed(arrays["scalars"], np.float64)
        values["step_sq"] = placed(arrays["step_sq"], np.float64)
        values["step_max"] = placed(arrays["step_max"], np.float64)
        values["skipped"] = float(arrays["skipped"])
        self._values = values


def _torch_batch(batch):
    return tuple(None if part is None else keras.tree.map_structure(
        lambda a: keras.ops.convert_to_tensor(np.asarray(a)), part)
        for part in batch)


class TorchProbeGradients:
    """`capture.tensorflow.ProbeGradients` on the PyTorch backend."""

    def __init__(self, model, batches):
        self._model = model
        self._batches = [_torch_batch(batch) for batch in batches]

    @property
    def batches(self):
        return self._batches

    def compute(self, variables):
        model = self._model
        parameters = [v.value for v in variables]
        totals, count = None, 0
        for batch in self._batches:
            x, y = batch[0], batch[1]
            sample_weight = batch[2] if len(batch) > 2 else None
            n = int(keras.tree.flatten(x)[0].shape[0])
            with torch.enable_grad():
                y_pred = model(x, training=False)
                loss = model.compute_loss(x=x, y=y, y_pred=y_pred,
                                          sample_weight=sample_weight,
                                          training=False)
                grads = torch.autograd.grad(loss, parameters,
                                            allow_unused=True)
            grads = [torch.zeros(p.shape) if g is None else
                     g.detach().to(torch.float32) * float(n)
                     for g, p in zip(grads, parameters)]
            totals = grads if totals is None else [
                t + g for t, g in zip(totals, grads)]
            count += n
        return [t / float(count) for t in totals]


class TorchTimestepGradients:
    """`capture.tensorflow.TimestepGradients` on the PyTorch backend: a zero
    perturbation (requiring a gradient) is added to each watched layer's
    output, and the loss is differentiated with respect to it."""

    def __init__(self, model, layers, samples):
        self._model = model
        self.layers = layers
        self._samples = _torch_batch(samples)

    def compute(self):
        model = self._model
        x, y, sample_weight = self._samples
        added, masks, wrapped = [], [], []
        try:
            for layer in self.layers:
                original = layer.call

                def call(*args, _original=original, **kwargs):
                    output = _original(*args, **kwargs)
                    perturbation = torch.zeros_like(output,
                                                    requires_grad=True)
                    added.append(perturbation)
                    return output + perturbation

                layer.call = call
                wrapped.append(layer)
            with torch.enable_grad():
                y_pred = model(x, training=False)
                loss = model.compute_loss(x=x, y=y, y_pred=y_pred,
                                          sample_weight=sample_weight,
                                          training=False)
                grads = torch.autograd.grad(loss, added, allow_unused=True)
        finally:
            for layer in wrapped:
                del layer.call
        tap = keras.Model(model.inputs, [layer.output for layer in self.layers])
        outputs = tap(x, training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        for output in outputs:
            mask = keras_backend.get_keras_mask(output)
            masks.append(None if mask is None else _host(mask))
        return [(np.zeros(1) if g is None else
                 _host(g).astype(np.float64), mask)
                for g, mask in zip(grads, masks)]
