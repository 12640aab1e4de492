"""Where the JAX capture's time goes: compiles, the compiled step, the adds.

`overhead.py` measures the default's overhead on JAX as whole-epoch ratios;
on a shared machine those move by several percent from round to round.
This breaks the cost down into parts that can be measured apart, on one
model at a time, so that a ratio above the goal can be traced to its cause:

* compiles: the XLA compilations of the train step in each epoch of a short
  `fit` (a few batches per epoch), with plain `keras.callbacks.TensorBoard`
  and with `GradientTensorBoard`, and whether the arrays passed to the step
  are committed to a device. jit compiles once per signature, and the
  committed-ness of every argument is part of it: Keras's train state is
  uncommitted, so a committed argument makes the outputs committed and the
  next call a new signature. Such a compile in an epoch after the first is
  paid by the steady epochs, and one per epoch would be paid by every epoch;
* the compiled step: XLA's cost analysis (flops, bytes accessed) and memory
  analysis of Keras's train step and of the capture's (whether the donated
  accumulators are updated in place: bytes of arguments aliased to
  outputs), and the time to trace and compile each: the one-time cost of
  the first epoch;
* the additions alone: `JaxTrainingCapture._add_step` jitted by itself on
  gradients of the model's shapes (``Σg += g``, the per-variable
  ``‖g‖₁, ‖g‖₂², max |g|`` rows, the Kahan-compensated scalars, the step
  table), and its ``Σg += g`` part alone, per call, against the plain step;
* the parts of the additions: each per-variable figure (``‖g‖₁``,
  ``‖g‖₂²``, ``max |g|``) jitted alone, and two other ways to compute the
  three (per shape group on the stacked gradients; one variadic reduce per
  variable), so that a cheaper formulation can be judged by its time;
* per step: the plain and the capture's jitted step alternating over the
  same batches (`overhead.measure_components_jax`).

JAX only: it sets ``KERAS_BACKEND=jax`` for itself.

Models: the seed CNN (`overhead.cnn_task`), and `scale.py`'s ResNet50 and
Dense(4096) stack (dense300m, not by default: about 6 GiB).

Usage: python bench/jax_step.py [--models cnn,resnet50,dense300m]
       [--repeats N]
Writes bench/out/jax_step.json.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from bench import machine  # noqa: E402
from bench import overhead  # noqa: E402
from bench import scale  # noqa: E402
from tb_gradients import GradientTensorBoard  # noqa: E402
from tb_gradients.capture import jax as jax_capture  # noqa: E402

# (fun_name, seconds) of every XLA compilation, as JAX reports them
_COMPILES = []


def _listen():
    def listener(event, seconds, fun_name=None, **kwargs):
        if event.endswith("backend_compile_duration"):
            _COMPILES.append((fun_name, seconds))

    jax.monitoring.register_event_duration_secs_listener(listener)


def resnet_task():
    """`scale.py`'s ResNet50 (32x32x3, 10 classes), 8 batches of 32."""
    def build():
        return scale.build("resnet50")[0]

    rng = np.random.default_rng(0)
    x = rng.random((256, 32, 32, 3), dtype=np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 10, 256), 10)
    return build, x, y, 32


def dense_task(name, inputs, classes, batches, batch):
    """A dense stack of `scale.py` (``dense300m``: Dense(4096) layers,
    about 286 M parameters; ``dense16m``: Input 2048 -> 4 x Dense 2048),
    ``batches`` batches of ``batch``."""
    def build():
        return scale.build(name)[0]

    rng = np.random.default_rng(0)
    x = rng.random((batches * batch, inputs), dtype=np.float32)
    y = keras.utils.to_categorical(
        rng.integers(0, classes, batches * batch), classes)
    return build, x, y, batch


TASKS = {"cnn": overhead.cnn_task, "resnet50": resnet_task,
         "dense300m": lambda: dense_task("dense300m", 64, 10, 4, 8),
         "dense16m": lambda: dense_task("dense16m", 2048, 2048, 8, 32)}


def _is_train_step(name):
    # Keras's jit of `train_step`, the capture's of its `step`
    return name in ("jit(train_step)", "jit(step)")


def compiles_per_epoch(task, epochs=3, batches=4):
    """Train-step compilations in each epoch of one short `fit` per
    configuration, and the committed-ness of the step's arguments."""
    build, x, y, batch = task()
    x, y = x[:batches * batch], y[:batches * batch]
    found = {}
    for name in ("plain", "default"):
        keras.utils.clear_session()
        keras.utils.set_random_seed(0)
        model = build()
        epoch_of = {}
        committed = {}

        class Marks(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                epoch_of[epoch] = len(_COMPILES)

            def on_train_batch_begin(self, step, logs=None):
                if step != 0:
                    return
                # the arrays the epoch's first step receives: the model's
                # variables (synced at an epoch's start) and the capture's
                model = self._model
                values = [v.value for v in (
                    model.trainable_variables + model.non_trainable_variables
                    + model.optimizer.variables + model.metrics_variables)]
                committed.setdefault("state", []).append(sorted({
                    bool(a.committed) for a in values}))
                hook = self._model.__dict__.get("_tb_gradients_jax_capture")
                if hook is not None:
                    committed.setdefault("accumulators", []).append(sorted({
                        bool(a.committed)
                        for a in jax.tree.leaves(hook.accumulators)}))

        with tempfile.TemporaryDirectory() as logdir:
            callback = (keras.callbacks.TensorBoard(logdir) if name == "plain"
                        else GradientTensorBoard(logdir))
            began = len(_COMPILES)
            model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0,
                      callbacks=[Marks(), callback])
        ends = [epoch_of[e] for e in range(epochs)] + [len(_COMPILES)]
        ends[0] = began  # compiles before the first epoch: the first's
        per_epoch = []
        for a, b in zip(ends, ends[1:]):
            steps = [s for n, s in _COMPILES[a:b] if _is_train_step(n)]
            per_epoch.append({"train_step_compiles": len(steps),
                              "train_step_compile_seconds": sum(steps),
                              "all_compile_seconds": sum(
                                  s for _, s in _COMPILES[a:b])})
        found[name] = {"epochs": per_epoch,
                       "committed_at_epoch_begin": committed}
        seconds = ", ".join(f"{e['train_step_compile_seconds']:.1f}"
                            for e in per_epoch)
        print(f"  {name}: train-step compiles per epoch "
              f"{[e['train_step_compiles'] for e in per_epoch]} "
              f"({seconds} s); committed at epoch begin: {committed}",
              flush=True)
    return found


def _state(model):
    return model._get_jax_state(
        trainable_variables=True, non_trainable_variables=True,
        optimizer_variables=True, metrics_variables=True)


def _analysis(compiled):
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    memory = compiled.memory_analysis()
    keys = ("argument_size_in_bytes", "output_size_in_bytes",
            "alias_size_in_bytes", "temp_size_in_bytes")
    return {
        "flops": float(cost.get("flops", float("nan"))),
        "bytes_accessed": float(cost.get("bytes accessed", float("nan"))),
        "memory": {k: int(getattr(memory, k, -1)) for k in keys},
    }


def compiled_steps(task):
    """Cost and memory analysis of Keras's train step and the capture's."""
    build, x, y, batch = task()
    keras.utils.clear_session()
    model = build()
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)
    hook = jax_capture.JaxTrainingCapture(model)
    hook.attach(steps_per_epoch=len(x) // batch)
    data = (x[:batch], y[:batch])
    state = _state(model)
    began = time.perf_counter()
    # a new function: a jit of `train_step` itself would find the
    # executable of the fit above
    plain = jax.jit(lambda state, data: model.train_step(state, data),
                    donate_argnums=0).lower(state, data).compile()
    plain_seconds = time.perf_counter() - began
    began = time.perf_counter()
    hooked = hook._compiled_step().lower(
        state, hook.accumulators, data).compile()
    hooked_seconds = time.perf_counter() - began
    hook.detach()
    found = {"plain": dict(_analysis(plain), compile_seconds=plain_seconds),
             "hooked": dict(_analysis(hooked),
                            compile_seconds=hooked_seconds),
             "variables": len(hook.variables), "groups": len(hook.groups),
             "accumulator_bytes": sum(
                 int(a.nbytes) for a in jax.tree.leaves(hook.accumulators)),
             "params": int(sum(np.prod(v.shape)
                               for v in model.trainable_variables))}
    for key in ("flops", "bytes_accessed"):
        found[f"{key}_ratio"] = found["hooked"][key] / found["plain"][key]
    hooked, extra = found["hooked"], (found["hooked"]["bytes_accessed"]
                                      - found["plain"]["bytes_accessed"])
    print(f"  compiled step: flops x{found['flops_ratio']:.4f}, bytes "
          f"accessed x{found['bytes_accessed_ratio']:.4f} "
          f"(+{extra / 1e6:.1f} MB); aliased "
          f"{hooked['memory']['alias_size_in_bytes'] / 1e6:.1f} MB of "
          f"{hooked['memory']['argument_size_in_bytes'] / 1e6:.1f} MB of "
          f"arguments (accumulators {found['accumulator_bytes'] / 1e6:.1f} "
          f"MB); trace + compile {plain_seconds:.1f} s plain, "
          f"{hooked_seconds:.1f} s with the capture ({found['variables']} "
          f"variables in {found['groups']} groups)", flush=True)
    return found


def _per_call(function, values, arguments, calls):
    """Seconds per call of ``values = function(values, *arguments)``."""
    values = function(values, *arguments)
    jax.block_until_ready(values)
    began = time.perf_counter()
    for _ in range(calls):
        values = function(values, *arguments)
    jax.block_until_ready(values)
    return (time.perf_counter() - began) / calls, values


def additions(task, repeats):
    """`_add_step` alone, and its ``Σg += g`` alone, per call."""
    build, x, y, batch = task()
    keras.utils.clear_session()
    model = build()
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)
    hook = jax_capture.JaxTrainingCapture(model)
    hook.attach(steps_per_epoch=len(x) // batch)
    variables = hook.variables
    rng = np.random.default_rng(0)
    grads = [jnp.asarray(rng.normal(size=v.shape).astype(np.float32) * 1e-3)
             for v in variables]

    def add_step(values, grads):
        return hook._add_step(values, grads, variables)

    def sums_only(sums, grads):
        sums = list(sums)
        inner = hook._inner
        for gradient, variable in zip(grads, variables):
            number, row = hook._slot[inner._get_variable_index(variable)]
            sums[number] = sums[number].at[row].add(gradient.reshape(-1))
        return sums

    add_step = jax.jit(add_step, donate_argnums=0)
    sums_only = jax.jit(sums_only, donate_argnums=0)
    values = hook.accumulators
    sums = [jnp.zeros_like(s) for s in values["sums"]]
    # about a second per measurement at the measured speed
    first, values = _per_call(add_step, values, (grads,), 3)
    calls = max(3, min(2000, int(1.0 / max(first, 1e-6))))
    whole, parts = [], []
    for _ in range(repeats):
        seconds, values = _per_call(add_step, values, (grads,), calls)
        whole.append(seconds)
        seconds, sums = _per_call(sums_only, sums, (grads,), calls)
        parts.append(seconds)
    hook.detach()
    found = {"add_step_seconds": statistics.median(whole),
             "sums_only_seconds": statistics.median(parts),
             "calls_per_measurement": calls,
             "params": int(sum(np.prod(v.shape) for v in variables))}
    print(f"  additions alone: _add_step "
          f"{found['add_step_seconds'] * 1e3:.3f} ms per step "
          f"({found['add_step_seconds'] / found['params'] * 1e9:.3f} "
          f"ns/param), of which Σg += g "
          f"{found['sums_only_seconds'] * 1e3:.3f} ms", flush=True)
    return found


def _seconds(function, arguments, calls, repeats):
    """Median seconds per call of ``function(*arguments)`` (jitted, its
    result awaited after ``calls`` calls)."""
    jax.block_until_ready(function(*arguments))
    spent = []
    for _ in range(repeats):
        began = time.perf_counter()
        for _ in range(calls):
            result = function(*arguments)
        jax.block_until_ready(result)
        spent.append((time.perf_counter() - began) / calls)
    return statistics.median(spent)


def breakdown(task, repeats):
    """The parts of `_add_step`'s per-variable work, each jitted alone on
    gradients of the model's shapes, and two other ways to compute the
    same three figures per variable: on each shape group's stacked
    gradients (one reduction per group and figure instead of one per
    variable), and in one pass per variable (a variadic `lax.reduce`
    over ``|g|, g², |g|``)."""
    from jax import lax

    build, x, y, batch = task()
    keras.utils.clear_session()
    model = build()
    hook = jax_capture.JaxTrainingCapture(model)
    hook.attach(steps_per_epoch=len(x) // batch)
    variables, groups = hook.variables, hook.groups
    hook.detach()
    rng = np.random.default_rng(0)
    grads = [jnp.asarray(rng.normal(size=v.shape).astype(np.float32) * 1e-3)
             for v in variables]

    def per_variable(*figures):
        def compute(grads):
            return [jnp.stack([figure(g) for figure in figures])
                    for g in grads]
        return jax.jit(compute)

    def l1(g):
        return jnp.sum(jnp.abs(g))

    def sq(g):
        return jnp.sum(jnp.square(g))

    def peak(g):
        return jnp.max(jnp.abs(g))

    def grouped(grads):
        rows = []
        for group in groups:
            stacked = jnp.stack([grads[i].reshape(-1) for i in group])
            absolute = jnp.abs(stacked)
            rows.append(jnp.stack([absolute.sum(axis=1),
                                   jnp.square(stacked).sum(axis=1),
                                   absolute.max(axis=1)], axis=1))
        return rows

    def one_pass(grads):
        rows = []
        for g in grads:
            g = g.reshape(-1)
            absolute = jnp.abs(g)
            rows.append(jnp.stack(lax.reduce(
                (absolute, jnp.square(g), absolute),
                (np.float32(0), np.float32(0), np.float32(-np.inf)),
                lambda a, b: (a[0] + b[0], a[1] + b[1],
                              jnp.maximum(a[2], b[2])), (0,))))
        return rows

    variants = {
        "l1 (sum |g|) per variable": per_variable(l1),
        "l2 squared (sum g^2) per variable": per_variable(sq),
        "max |g| per variable": per_variable(peak),
        "the three per variable (as _add_step)": per_variable(l1, sq, peak),
        "the three per shape group, stacked": jax.jit(grouped),
        "the three in one variadic reduce per variable": jax.jit(one_pass),
    }
    first = _seconds(variants["the three per variable (as _add_step)"],
                     (grads,), 2, 1)
    calls = max(2, min(1000, int(0.5 / max(first, 1e-6))))
    found = {name: _seconds(function, (grads,), calls, repeats)
             for name, function in variants.items()}
    for name, seconds in found.items():
        print(f"  {name}: {seconds * 1e3:.3f} ms per step", flush=True)
    return {"seconds": found, "variables": len(variables),
            "groups": len(groups), "calls_per_measurement": calls}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,resnet50")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "out", "jax_step.json"))
    args = parser.parse_args()
    _listen()
    results = {"machine": machine.describe(), "versions": overhead.versions(),
               "command": "python bench/jax_step.py " + " ".join(
                   sys.argv[1:]), "models": {}}
    for name in args.models.split(","):
        print(f"{name}:", flush=True)
        task = TASKS[name]
        result = results["models"][name] = {}
        result["compiles"] = compiles_per_epoch(task)
        result["compiled"] = compiled_steps(task)
        result["additions"] = additions(task, args.repeats)
        result["breakdown"] = breakdown(task, args.repeats)
        steps = overhead.measure_components_jax(task, 0.0, 1.0,
                                                repeats=2 * args.repeats)
        result["steps"] = {k: v for k, v in steps.items()
                           if k.startswith(("hook_step", "plain_step",
                                            "hooked_step"))}
        plain = result["steps"]["plain_step_seconds"]
        result["additions"]["share_of_plain_step"] = (
            result["additions"]["add_step_seconds"] / plain)
        print(f"  per step: plain {plain * 1e3:.1f} ms, capture's "
              f"{result['steps']['hooked_step_seconds'] * 1e3:.1f} ms: "
              f"{result['steps']['hook_step_ratio']:.3f}x (wall), "
              f"{result['steps']['hook_step_cpu_ratio']:.3f}x (CPU); the "
              f"additions alone are "
              f"{result['additions']['share_of_plain_step'] * 100:.2f} % of "
              "the plain step", flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
