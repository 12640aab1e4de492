"""Cost of GradientTensorBoard at scale, against plain TensorBoard.

Each model is trained in its own process once with plain
`keras.callbacks.TensorBoard` and once with `GradientTensorBoard` (defaults),
alternating, and the figures are differences between the two runs of the
same round, per parameter:

* epoch end: the callback's window-end work (device statistics, transfer of
  the reductions, summary write), timed inside the callback, median over the
  epochs after the first, in ns per parameter;
* first epoch: (first-epoch time - steady epoch time) with the callback
  minus the same for plain TensorBoard: the one-time cost of tracing;
* state save: the epoch-end write of the gradient state a resume continues
  from (`tb_gradients/resume.py`), timed inside the callback, median over
  the epochs, in ns per parameter, and the file's bytes per parameter; the
  callback only submits it there, and the write itself runs on a thread
  of its own while the next epoch trains: its time is reported apart
  (state write), as it competes with the training for the cores;
* peak memory: peak resident set size of the process with the callback
  minus plain's, in bytes per parameter (the device here is the host), and
  the bytes per parameter the callback's own state holds, counted from its
  variables.

Also: ``fit(epochs=1)`` ten times in a loop on the seed CNN, total time with
the callback / with plain TensorBoard, alternating, in one process.

Models: Keras ResNet50 (``weights=None``, 32x32x3 inputs, 10 classes, 23.6 M
parameters), a stack of Dense(4096) layers (about 300 M parameters) on
small inputs, a few steps per epoch, ``dense16m`` (Input 2048 -> 4 x
Dense 2048, 16.8 M parameters, batch 32, 8 steps per epoch) and
``blocks24`` (`blocks_model`: 387 small variables, 20 steps per epoch),
``stack2000`` (`stack_model`: 2,002 variables of a few parameters each,
100 steps per epoch, ``gradient_window=10``: ten window ends per epoch)
``stack2000_nonfinite`` (the same whose every window holds NaN and
Inf) and ``cnn`` (the seed's CNN, 8 steps per epoch: the first epoch's
one-time cost on a small model).

Also per model: the train step's extra time (the steady epoch's, less its
window end, against plain's) in ns per parameter per step, and the bytes
the window-end kernel moves to the host per window.

Backends: ``--backend jax`` (or ``torch``) runs every process with that
``KERAS_BACKEND`` (the fit loop too, in a process of its own). There the capture's state is
the accumulators pytree of `capture.jax.JaxTrainingCapture` (JAX arrays,
counted by their bytes) instead of TensorFlow variables, and the epoch's
XLA compile seconds are recorded as well: a compile in a steady epoch (a
new signature of the train step) would otherwise read as window-end cost.
The window's accumulated state (`window.SourceWindows.states`) is each
backend's own (`window.kernels`). The figures of each backend go to their
own file (bench/out/scale.json, bench/out/scale_<backend>.json); a run
keeps the file's figures it did not measure again (`keep_earlier`).

Usage: python bench/scale.py [--backend tensorflow|jax|torch]
       [--models resnet50,dense300m,dense16m] [--rounds N] [--fit-loop-rounds N]
       [--out FILE]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODELS = {
    # name: (epochs, steps per epoch, batch)
    "resnet50": (4, 4, 32),
    "dense300m": (4, 3, 8),
    "dense16m": (4, 8, 32),
    "blocks24": (4, 20, 16),
    "stack2000": (3, 100, 16),
    "stack2000_nonfinite": (3, 100, 16),
    "cnn": (4, 8, 256),
}
# GradientTensorBoard arguments per model (defaults otherwise)
CALLBACK_ARGUMENTS = {
    "stack2000": {"gradient_window": 10},
    "stack2000_nonfinite": {"gradient_window": 10},
}


def build(name):
    import keras

    keras.utils.set_random_seed(0)
    if name == "resnet50":
        model = keras.applications.ResNet50(
            weights=None, input_shape=(32, 32, 3), classes=10)
        shape, classes = (32, 32, 3), 10
    elif name == "dense16m":
        # Input 2048 -> 4 x Dense 2048 (16.8 M parameters)
        layers = [keras.Input((2048,))]
        layers += [keras.layers.Dense(2048, "relu") for _ in range(3)]
        layers += [keras.layers.Dense(2048, "softmax")]
        model = keras.Sequential(layers)
        shape, classes = (2048,), 2048
    elif name == "blocks24":
        model = blocks_model()
        shape, classes = None, 10
    elif name == "cnn":  # the seed's CNN (`overhead.cnn_task`)
        from bench import overhead

        model = overhead.cnn_task()[0]()
        return model, (28, 28, 1), 10
    elif name.startswith("stack2000"):
        model = stack_model(overflow=name.endswith("nonfinite"))
        shape, classes = (8,), 8
    elif name == "dense300m":
        layers = [keras.Input((64,)), keras.layers.Dense(4096, "relu")]
        layers += [keras.layers.Dense(4096, "relu") for _ in range(17)]
        layers += [keras.layers.Dense(10, "softmax")]
        model = keras.Sequential(layers)
        shape, classes = (64,), 10
    else:
        raise ValueError(f"unknown model {name!r}")
    model.compile(keras.optimizers.SGD(0.01), "categorical_crossentropy")
    return model, shape, classes


def blocks_model(blocks=24, width=16, sequence=16, vocabulary=64):
    """A transformer-like stack of tiny blocks: an embedding, ``blocks`` x
    (layer norm, 2-head attention, layer norm, 2-layer MLP, residuals), a
    pooled head: 387 small trainable variables (many variables, few
    parameters)."""
    import keras

    tokens = keras.Input((sequence,), dtype="int32")
    x = keras.layers.Embedding(vocabulary, width)(tokens)
    for _ in range(blocks):
        y = keras.layers.LayerNormalization()(x)
        y = keras.layers.MultiHeadAttention(2, width // 2)(y, y)
        x = keras.layers.Add()([x, y])
        y = keras.layers.LayerNormalization()(x)
        y = keras.layers.Dense(2 * width, "relu")(y)
        y = keras.layers.Dense(width)(y)
        x = keras.layers.Add()([x, y])
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, keras.layers.Dense(10, "softmax")(x))


def stack_model(blocks=1000, width=8, overflow=False):
    """A residual stack of ``blocks`` x Dense(``width``) (72 parameters
    and two variables each) and a head: 2,002 trainable variables of a few
    parameters (the per-variable costs). With ``overflow``, the last 100
    blocks' kernels are scaled up so that the backward pass overflows
    float32 in the lower part of the stack: every window's gradients hold
    non-finite values."""
    import keras

    class Stack(keras.Model):
        # a subclassed model: a functional graph this deep exceeds
        # Python's recursion limit when Keras walks it
        def __init__(self):
            super().__init__()
            self.blocks = [keras.layers.Dense(
                width, kernel_initializer=keras.initializers.RandomNormal(
                    stddev=40.0 if overflow and b >= blocks - 100
                    else 0.01)) for b in range(blocks)]
            self.head = keras.layers.Dense(width, "softmax")

        def call(self, x):
            for dense in self.blocks:
                x = x + dense(x)
            return self.head(x)

    model = Stack()
    model(keras.ops.zeros((1, width)))  # creates the variables
    return model


def child(name, config, logdir):
    """One training run; prints a JSON line of its figures."""
    import keras
    import numpy as np

    from bench import overhead
    from tb_gradients import GradientTensorBoard
    from tb_gradients import resume

    overhead.count_compiles()

    epochs, steps, batch = MODELS[name]
    model, shape, classes = build(name)
    params = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    rng = np.random.default_rng(0)
    if shape is None:  # tokens
        x = rng.integers(0, 64, (steps * batch, 16)).astype(np.int32)
    else:
        x = rng.random((steps * batch,) + shape, dtype=np.float32)
    y = keras.utils.to_categorical(rng.integers(0, classes, steps * batch),
                                   classes)
    marks, compiled = [], []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            marks.append(time.perf_counter())
            compiled.append(overhead._COMPILE_SECONDS[0])

        def on_train_end(self, logs=None):
            marks.append(time.perf_counter())
            compiled.append(overhead._COMPILE_SECONDS[0])

    spent, saves, writes, moved = [], [], [], []
    if config == "plain":
        callback = keras.callbacks.TensorBoard(logdir)
    else:
        callback = GradientTensorBoard(logdir,
                                       **CALLBACK_ARGUMENTS.get(name, {}))
        spent = overhead.time_window_ends(callback)
        saves = time_calls(callback, "_save_state")
        # the write itself runs on the writer's thread, alongside the next
        # epoch's steps (and their time): `_save_state` only submits it
        writes = time_calls(callback._state_writer, "_write")
        moved = count_host_bytes(callback)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0,
              shuffle=False, callbacks=[Clock(), callback])
    epoch_times = [b - a for a, b in zip(marks, marks[1:])]
    epoch_compiles = [b - a for a, b in zip(compiled, compiled[1:])]
    state_bytes = state_file_bytes = 0
    if config != "plain":
        state_bytes = callback_state_bytes(callback)
        directory = os.path.join(logdir, resume.STATE_DIRECTORY)
        state_file_bytes = os.path.getsize(resume.state_path(
            directory, resume.saved_epochs(directory)[-1]))
    print(json.dumps({
        "backend": keras.backend.backend(),
        "params": params,
        "variables": len(model.trainable_variables),
        "epoch_seconds": epoch_times,
        # XLA compile seconds in each epoch (JAX; 0 on TensorFlow)
        "epoch_compile_seconds": epoch_compiles,
        "epoch_end_seconds": spent,
        "peak_rss_bytes": resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_before_fit_bytes": rss_before,
        "state_bytes": state_bytes,
        "state_save_seconds": saves,
        "state_write_seconds": writes,
        "state_file_bytes": state_file_bytes,
        # bytes the window-end kernel moved to the host, per window
        "host_bytes_per_window": moved,
    }))


def time_calls(callback, method):
    """Times each call of ``callback.<method>``; returns the list the
    durations are appended to."""
    spent = []
    original = getattr(callback, method)

    def timed(*args):
        began = time.perf_counter()
        original(*args)
        spent.append(time.perf_counter() - began)

    setattr(callback, method, timed)
    return spent


def count_host_bytes(callback):
    """The bytes the training source's window-end kernel moves to the host
    in each window (its ``host_bytes``, counted at `to_host`)."""
    moved = []
    original = callback._training_record

    def counted(*args):
        before = 0
        if "training" in callback._windows:
            before = callback._windows["training"].kernel.host_bytes
        record = original(*args)
        moved.append(callback._windows["training"].kernel.host_bytes
                     - before)
        return record

    callback._training_record = counted
    return moved


def callback_state_bytes(callback):
    """Bytes the callback holds: the capture's window sums and scalars (its
    TensorFlow variables, or on JAX its accumulators pytree) and the
    accumulated state of the window ends (TensorFlow's on both)."""
    import keras

    hook = callback._capture
    if keras.backend.backend() == "jax":
        import jax

        total = sum(int(a.nbytes) for a in jax.tree.leaves(
            hook.accumulators))
    elif keras.backend.backend() == "torch":
        import torch

        total = sum(t.numel() * t.element_size()
                    for value in hook._values.values()
                    for t in (value if isinstance(value, list) else [value])
                    if isinstance(t, torch.Tensor))
        total += hook._first_nonfinite.numel() * 4
    else:
        variables = hook.window_sums + [hook.window_scalars]
        total = sum(int(v.shape.num_elements()) * v.dtype.size
                    for v in variables)
    for windows in callback._windows.values():
        total += sum(state.nbytes for state in windows.states)
    return int(total)


def run_process(backend, arguments):
    """This script with ``arguments`` in a process whose Keras has
    ``backend``; returns the JSON of its last line of output."""
    completed = subprocess.run(
        [sys.executable, os.path.abspath(__file__)] + arguments, cwd=ROOT,
        env=dict(os.environ, KERAS_BACKEND=backend), capture_output=True,
        text=True)
    if completed.returncode:
        sys.stderr.write(completed.stderr[-4000:])
        completed.check_returncode()
    lines = completed.stdout.rstrip().splitlines()
    for line in lines[:-1]:  # progress
        print(line, flush=True)
    result = json.loads(lines[-1])
    if result.get("backend", backend) != backend:
        raise RuntimeError(f"asked for the {backend} backend, the process "
                           f"ran {result['backend']}")
    return result


def run_child(name, config, backend):
    with tempfile.TemporaryDirectory() as logdir:
        return run_process(backend, ["--child", name, config, logdir])


def measure_model(name, rounds, backend):
    pairs = []
    for r in range(rounds):
        order = ["plain", "gradients"] if r % 2 == 0 else ["gradients",
                                                           "plain"]
        runs = {config: run_child(name, config, backend) for config in order}
        pairs.append(runs)
        print(f"  round {r}: " + ", ".join(
            f"{c}: epochs {[round(t, 2) for t in runs[c]['epoch_seconds']]}"
            f" peak {runs[c]['peak_rss_bytes'] / 2**30:.2f} GiB"
            for c in order), flush=True)
    params = pairs[0]["plain"]["params"]
    epoch_end = statistics.median(
        statistics.median(p["gradients"]["epoch_end_seconds"][1:])
        for p in pairs)
    first_extra = statistics.median(
        (p["gradients"]["epoch_seconds"][0]
         - statistics.median(p["gradients"]["epoch_seconds"][1:]))
        - (p["plain"]["epoch_seconds"][0]
           - statistics.median(p["plain"]["epoch_seconds"][1:]))
        for p in pairs)
    steady_ratio = statistics.median(
        statistics.median(p["gradients"]["epoch_seconds"][1:])
        / statistics.median(p["plain"]["epoch_seconds"][1:]) for p in pairs)
    state_save = statistics.median(
        statistics.median(p["gradients"]["state_save_seconds"])
        for p in pairs)
    writes = [p["gradients"].get("state_write_seconds") for p in pairs]
    state_write = (statistics.median(statistics.median(w) for w in writes)
                   if all(writes) else None)
    epochs, steps, _ = MODELS[name]
    # the train steps' extra time: the steady epoch's, less its window
    # ends (several per epoch with `gradient_window`)
    step_extra = statistics.median(
        (statistics.median(p["gradients"]["epoch_seconds"][1:])
         - window_ends_per_epoch(p["gradients"]["epoch_end_seconds"],
                                 epochs)
         - statistics.median(p["plain"]["epoch_seconds"][1:])) / steps
        for p in pairs)
    memory = statistics.median(p["gradients"]["peak_rss_bytes"]
                               - p["plain"]["peak_rss_bytes"] for p in pairs)
    compiles = {config: statistics.median(
        sum(p[config].get("epoch_compile_seconds", [0])[1:]) for p in pairs)
        for config in ("plain", "gradients")}
    return {
        "params": params,
        "variables": pairs[0]["plain"].get("variables"),
        "epoch_end_seconds": epoch_end,
        "epoch_end_ns_per_param": epoch_end / params * 1e9,
        "first_epoch_extra_seconds": first_extra,
        "steady_epoch_ratio": steady_ratio,
        "step_extra_seconds": step_extra,
        "step_ns_per_param": step_extra / params * 1e9,
        "host_bytes_per_window": statistics.median(
            statistics.median(p["gradients"]["host_bytes_per_window"])
            for p in pairs),
        "state_save_seconds": state_save,
        "state_save_ns_per_param": state_save / params * 1e9,
        # the background write of each save (overlapping the next epoch)
        "state_write_seconds": state_write,
        "state_write_ns_per_param": (None if state_write is None
                                     else state_write / params * 1e9),
        "state_file_bytes_per_param": pairs[0]["gradients"][
            "state_file_bytes"] / params,
        "peak_memory_overhead_bytes": memory,
        "peak_memory_overhead_bytes_per_param": memory / params,
        "state_bytes_per_param": pairs[0]["gradients"]["state_bytes"] / params,
        "plain_peak_rss_bytes": statistics.median(
            p["plain"]["peak_rss_bytes"] for p in pairs),
        # XLA compile seconds in the epochs after the first, per fit (JAX)
        "steady_compile_seconds": compiles,
        "runs": pairs,
    }


def window_ends_per_epoch(spent, epochs):
    """The window ends' time of a steady epoch: the median window end
    after the first epoch's, times the windows per epoch."""
    per_epoch = len(spent) // epochs
    return statistics.median(spent[per_epoch:]) * per_epoch


# The notebook patterns of ``fit(epochs=1)`` in a loop: whether each fit
# continues where the last ended (``initial_epoch``, so the callback
# reads and writes the resume state each time) and whether one callback
# is reused or a new one made per fit.
FIT_LOOP_PATTERNS = {
    "from_zero_new": (False, False),
    "from_zero_reused": (False, True),
    "continuing_new": (True, False),
    "continuing_reused": (True, True),
}


def fit_loop(rounds, fits=10):
    """``fit(epochs=1)`` x ``fits`` with and without the callback, in each
    of `FIT_LOOP_PATTERNS` (run in a process of the backend's,
    `run_process`; prints its progress, then its figures as a JSON
    line)."""
    import keras

    from bench import overhead
    from tb_gradients import GradientTensorBoard

    build_model, x, y, batch = overhead.cnn_task()
    totals = {pattern: {"plain": [], "gradients": []}
              for pattern in FIT_LOOP_PATTERNS}
    with tempfile.TemporaryDirectory() as root:
        for r in range(rounds):
            order = ["plain", "gradients"] if r % 2 == 0 else ["gradients",
                                                               "plain"]
            for pattern, (continuing, reused) in FIT_LOOP_PATTERNS.items():
                for config in order:
                    keras.utils.clear_session()
                    keras.utils.set_random_seed(r)
                    model = build_model()
                    logdir = os.path.join(root, f"{pattern}_{config}_{r}")

                    def make():
                        return (keras.callbacks.TensorBoard(logdir)
                                if config == "plain"
                                else GradientTensorBoard(logdir))

                    callback = make()
                    began = time.perf_counter()
                    for fit in range(fits):
                        if not reused and fit:
                            callback = make()
                        model.fit(x, y, batch_size=batch,
                                  epochs=fit + 1 if continuing else 1,
                                  initial_epoch=fit if continuing else 0,
                                  verbose=0, callbacks=[callback])
                    totals[pattern][config].append(
                        time.perf_counter() - began)
                print(f"  round {r} {pattern}: plain "
                      f"{totals[pattern]['plain'][-1]:.2f} s, gradients "
                      f"{totals[pattern]['gradients'][-1]:.2f} s",
                      flush=True)
    patterns = {}
    for pattern, seconds in totals.items():
        ratios = [g / p for g, p in zip(seconds["gradients"],
                                        seconds["plain"])]
        patterns[pattern] = {"ratio": statistics.median(ratios),
                             "ratios": ratios, "seconds": seconds}
    print(json.dumps({"backend": keras.backend.backend(), "fits": fits,
                      "ratio": patterns["from_zero_new"]["ratio"],
                      "ratios": patterns["from_zero_new"]["ratios"],
                      "patterns": patterns}))


def backend_versions():
    """Printed as a JSON line by a process of the backend's."""
    import keras

    from bench import overhead

    found = {"backend": keras.backend.backend(),
             "code": overhead.code_version()}
    if found["backend"] == "jax":
        import jax
        import jaxlib

        found.update(jax=jax.__version__, jaxlib=jaxlib.__version__)
    print(json.dumps(found))


def keep_earlier(results, out):
    """Keeps the figures of an earlier run in ``out`` that this run did not
    measure (other models, the fit loop), when it ran on the same machine
    and backend: one model can be measured again, or added, without the
    others (each model's entry names its command and code)."""
    if not os.path.exists(out):
        return
    with open(out) as f:
        earlier = json.load(f)
    if (earlier.get("machine") != results["machine"]
            or earlier.get("backend", "tensorflow") != results["backend"]):
        return
    for name, result in earlier.get("models", {}).items():
        results["models"].setdefault(name, dict(
            result, command=result.get("command", earlier.get("command")),
            code=result.get("code", earlier.get("versions", {}).get(
                "code"))))
    if "fit_loop" not in results and "fit_loop" in earlier:
        results["fit_loop"] = dict(earlier["fit_loop"], command=earlier[
            "fit_loop"].get("command", earlier.get("command")))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--fit-loop-child":
        fit_loop(int(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--versions-child":
        backend_versions()
        return
    from bench import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="tensorflow",
                        choices=("tensorflow", "jax", "torch"),
                        help="the Keras backend of every training process")
    parser.add_argument("--models", default="resnet50,dense300m")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--fit-loop-rounds", type=int, default=None,
                        help="default: 3 on TensorFlow, 1 on JAX (a round "
                        "is 20 one-epoch fits of the seed CNN, minutes on "
                        "a CPU with JAX)")
    parser.add_argument("--out", default=None,
                        help="default: bench/out/scale.json on TensorFlow, "
                        "bench/out/scale_jax.json on JAX")
    args = parser.parse_args()
    if args.fit_loop_rounds is None:
        args.fit_loop_rounds = 3 if args.backend == "tensorflow" else 1
    out = args.out or os.path.join(HERE, "out", "scale.json" if (
        args.backend == "tensorflow") else f"scale_{args.backend}.json")
    results = {"machine": machine.describe(), "backend": args.backend,
               "versions": run_process(args.backend, ["--versions-child"]),
               "command": "python bench/scale.py " + " ".join(sys.argv[1:]),
               "models": {}}
    for name in [m for m in args.models.split(",") if m]:
        print(f"{name}:", flush=True)
        result = results["models"][name] = measure_model(
            name, args.rounds, args.backend)
        result.update(command=results["command"],
                      code=results["versions"].get("code"))
        print(f"  {result['params'] / 1e6:.1f} M params: epoch end "
              f"{result['epoch_end_seconds'] * 1000:.0f} ms = "
              f"{result['epoch_end_ns_per_param']:.2f} ns/param; first epoch "
              f"+{result['first_epoch_extra_seconds']:.2f} s; peak memory "
              f"+{result['peak_memory_overhead_bytes_per_param']:.1f} "
              f"bytes/param (state "
              f"{result['state_bytes_per_param']:.1f} bytes/param); steady "
              f"epoch {result['steady_epoch_ratio']:.3f}x plain; state save "
              f"{result['state_save_seconds'] * 1000:.0f} ms = "
              f"{result['state_save_ns_per_param']:.2f} ns/param, "
              f"{result['state_file_bytes_per_param']:.1f} bytes/param on "
              f"disk, written in the background in "
              f"{result['state_write_seconds'] * 1000:.0f} ms = "
              f"{result['state_write_ns_per_param']:.2f} ns/param; train "
              f"step +{result['step_ns_per_param']:.2f} ns/param/step; "
              f"{result['host_bytes_per_window']:.0f} bytes to the host per "
              f"window ({result['params']} parameters)", flush=True)
        if args.backend == "jax":
            compiles = result["steady_compile_seconds"]
            print(f"  XLA compile seconds after the first epoch: plain "
                  f"{compiles['plain']:.2f}, gradients "
                  f"{compiles['gradients']:.2f}", flush=True)
    if args.fit_loop_rounds:
        print("fit(epochs=1) x 10, seed CNN:", flush=True)
        results["fit_loop"] = run_process(
            args.backend, ["--fit-loop-child", str(args.fit_loop_rounds)])
        print("  " + ", ".join(
            f"{name} {pattern['ratio']:.3f}x" for name, pattern in
            results["fit_loop"]["patterns"].items()) + " plain TensorBoard",
              flush=True)
    keep_earlier(results, out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
