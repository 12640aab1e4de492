"""Overhead of GradientTensorBoard on `fit`, as ratios against plain `fit`.

Paired, alternating runs in one process: each round trains a fresh model
once with every configuration, in rotating order, and the ratio of each
configuration's steady-state epoch time (first epoch, which traces, left
out) to the baseline's in the same round is recorded. The median over rounds
is reported, for wall time and for the process's CPU time (steadier on a
shared machine). Baseline: `fit` with plain `keras.callbacks.TensorBoard`, the
callback users replace.

Configurations: default (training source), probe, probe + heatmaps and
histograms every epoch, and the naive approach (a GradientTape over the whole
training set at every epoch end).

Windows of N optimizer steps (``gradient_window=N``, default statistics) are
measured apart, against plain TensorBoard in the same rounds: their window
ends do not fall on epoch boundaries, so the figure is the time of
``--window-spans`` whole windows (optimizer steps N to (spans + 1) * N, each
window end included; the first window, which traces, left out) over the time
of the same steps with plain TensorBoard.

Backends: Keras fixes its backend when it is imported (``KERAS_BACKEND``),
so each backend is measured in a child process of its own (this script again,
with ``--child``), which takes its baseline in its own rounds: a ratio
compares two runs on the same backend, never one backend with the other.
The capture differs per backend (a hook on the optimizer's variables on
TensorFlow, extra outputs of Keras's jitted train step on JAX), so the
default's overhead is reported per backend. On JAX the children measure the
default only (``--jax-configs``): the naive configuration is a
`tf.GradientTape`, and on a CPU Keras's JAX CNN takes several times
TensorFlow's time per step (XLA's CPU convolutions), so each further
configuration, and the windows (``--jax-window``, off unless asked), cost
minutes.

Usage: python bench/overhead.py [--backend all|tensorflow|jax] [--rounds N]
       [--epochs E] [--models cnn,lstm] [--configs ...] [--jax-configs ...]
       [--window N] [--window-spans K] [--jax-window N] [--no-components]

Writes bench/out/overhead.json: per backend, its figures, versions and
command. A run of one backend keeps the other backend's entry of an earlier
run on the same machine (each entry says when it was measured), so that the
two can be measured in separate runs.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench import machine  # noqa: E402
from tb_gradients import GradientTensorBoard  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
# A tf.GradientTape over the training set: TensorFlow only.
TENSORFLOW_ONLY = ("naive",)


def cnn_task():
    """The seed's MNIST CNN on 12,000 random 28x28 samples, batch 256."""
    rng = np.random.default_rng(0)
    x = rng.random((12000, 28, 28, 1), dtype=np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 10, 12000), 10)

    def build():
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPool2D(2),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPool2D(2),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ])
        model.compile(keras.optimizers.SGD(0.01), "categorical_crossentropy")
        return model

    return build, x, y, 256


def lstm_task():
    """A 2-layer LSTM on 4,000 random sequences of 40 steps x 8 features."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 40, 8)).astype(np.float32)
    y = (x[:, :5, 0].sum(axis=1) > 0).astype(np.float32)

    def build():
        model = keras.Sequential([
            keras.Input((40, 8)),
            keras.layers.LSTM(64, return_sequences=True),
            keras.layers.LSTM(64),
            keras.layers.Dense(1, activation="sigmoid"),
        ])
        model.compile(keras.optimizers.SGD(0.01), "binary_crossentropy")
        return model

    return build, x, y, 128


# XLA compile seconds so far in this process (JAX only, `count_compiles`)
_COMPILE_SECONDS = [0.0]


def count_compiles():
    """On JAX, adds up XLA's compile time from here on, so that an epoch
    that compiled (a new signature of the train step) can be told from
    one that did not; TensorFlow's tracing is not counted."""
    if keras.backend.backend() != "jax" or _COMPILE_SECONDS[1:]:
        return
    import jax

    def listener(event, seconds, **kwargs):
        if event.endswith("backend_compile_duration"):
            _COMPILE_SECONDS[0] += seconds

    jax.monitoring.register_event_duration_secs_listener(listener)
    _COMPILE_SECONDS.append("listening")


class EpochClock(keras.callbacks.Callback):
    """Time between consecutive epoch starts (includes every callback).

    Keeps wall time and the process's CPU time (all threads). On a shared
    machine other processes stretch wall time but barely touch this
    process's CPU time, so the CPU-time ratio is the steadier figure; both
    are reported. On JAX it also keeps the XLA compile time
    (`count_compiles`), part of both.
    """

    def on_train_begin(self, logs=None):
        self.marks = []

    def _mark(self):
        self.marks.append((time.perf_counter(), time.process_time(),
                           _COMPILE_SECONDS[0]))

    def on_epoch_begin(self, epoch, logs=None):
        self._mark()

    def on_train_end(self, logs=None):
        self._mark()

    def steady_epoch_time(self, clock=0):
        durations = np.diff([mark[clock] for mark in self.marks])
        return float(np.median(durations[1:]))

    def steady_compile_seconds(self):
        """XLA compile seconds in the epochs after the first (in total)."""
        return float(self.marks[-1][2] - self.marks[1][2])


class StepClock(keras.callbacks.Callback):
    """Wall and CPU time at the end of chosen optimizer steps of one `fit`.

    Put it after the callback being measured: a mark at a window's last
    step then comes after that window's end (statistics, write, flush).
    Counts batches (one optimizer step each) instead of reading the
    optimizer's counter, so that it adds no device read of its own.
    """

    def __init__(self, steps):
        super().__init__()
        self.at = set(steps)

    def on_train_begin(self, logs=None):
        self.step = 0
        self.marks = {}

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step in self.at:
            self.marks[self.step] = (time.perf_counter(), time.process_time())

    def seconds(self, begin, end, clock=0):
        return self.marks[end][clock] - self.marks[begin][clock]


class NaiveFullTape(keras.callbacks.Callback):
    """The naive way: full training set through a GradientTape per epoch."""

    def __init__(self, x, y, batch_size):
        super().__init__()
        self.dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(
            batch_size)

    def on_train_begin(self, logs=None):
        model = self.model

        @tf.function
        def batch_gradients(xb, yb):
            with tf.GradientTape() as tape:
                loss = model.compute_loss(x=xb, y=yb, y_pred=model(xb))
            return tape.gradient(loss, model.trainable_variables)

        self.batch_gradients = batch_gradients

    def on_epoch_end(self, epoch, logs=None):
        totals = None
        for xb, yb in self.dataset:
            grads = self.batch_gradients(xb, yb)
            totals = grads if totals is None else [
                t + g for t, g in zip(totals, grads)]
        self.last = [t.numpy() for t in totals]


def configurations(x, y, batch, logdir):
    probe = (x[:512], y[:512])
    return {
        "plain": lambda d: [keras.callbacks.TensorBoard(d)],
        "default": lambda d: [GradientTensorBoard(d)],
        "probe": lambda d: [GradientTensorBoard(d, source="probe",
                                                probe_data=probe,
                                                heatmap_cells=0,
                                                histograms=False)],
        "probe_full": lambda d: [GradientTensorBoard(d, source="both",
                                                     probe_data=probe)],
        "naive": lambda d: [keras.callbacks.TensorBoard(d),
                            NaiveFullTape(x, y, batch)],
    }


def measure(task, rounds, epochs, names):
    build, x, y, batch = task()
    ratios = {name: [] for name in names if name != "plain"}
    cpu_ratios = {name: [] for name in names if name != "plain"}
    times = {name: [] for name in names}
    cpu_times = {name: [] for name in names}
    # the default's epoch ends, timed inside the same fits (the first,
    # which traces, left out)
    epoch_ends = []
    count_compiles()
    compiles = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as root:
        configs = configurations(x, y, batch, root)
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            epoch_time, cpu_time = {}, {}
            for name in order:
                keras.utils.clear_session()
                keras.utils.set_random_seed(r)
                model = build()
                clock = EpochClock()
                logdir = os.path.join(root, f"{name}_{r}")
                callbacks = configs[name](logdir)
                if name == "default":
                    spent = time_window_ends(callbacks[0])
                model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0,
                          callbacks=[clock] + callbacks)
                if name == "default":
                    epoch_ends += spent[1:]
                epoch_time[name] = clock.steady_epoch_time(0)
                cpu_time[name] = clock.steady_epoch_time(1)
                times[name].append(epoch_time[name])
                cpu_times[name].append(cpu_time[name])
                compiles[name].append(clock.steady_compile_seconds())
            for name in ratios:
                ratios[name].append(epoch_time[name] / epoch_time["plain"])
                cpu_ratios[name].append(cpu_time[name] / cpu_time["plain"])
            print(f"  round {r}: " + ", ".join(
                f"{n}={epoch_time[n]:.3f}s/{cpu_time[n]:.3f}cpu-s"
                for n in names), flush=True)
    steps = math.ceil(len(x) / batch)
    return {
        "median_ratio": {n: statistics.median(v) for n, v in ratios.items()},
        "median_cpu_ratio": {n: statistics.median(v)
                             for n, v in cpu_ratios.items()},
        "ratios": ratios,
        "cpu_ratios": cpu_ratios,
        "median_epoch_seconds": {n: statistics.median(v)
                                 for n, v in times.items()},
        "median_epoch_cpu_seconds": {n: statistics.median(v)
                                     for n, v in cpu_times.items()},
        "steps_per_epoch": steps,
        # steady epoch time per optimizer step, every callback included
        "median_step_ms": {n: statistics.median(v) / steps * 1000
                           for n, v in times.items()},
        "median_epoch_end_seconds": (statistics.median(epoch_ends)
                                     if epoch_ends else None),
        # XLA compile seconds in the steady epochs of one fit (JAX; a
        # compile there is in the steady epoch times too)
        "median_steady_compile_seconds": (
            {n: statistics.median(v) for n, v in compiles.items()}
            if keras.backend.backend() == "jax" else None),
    }


def measure_windows(task, rounds, window, spans):
    """Windows of ``window`` steps against plain TensorBoard, per round.

    Each round trains a fresh model once with each (alternating order) for
    enough epochs to reach step ``(spans + 1) * window``, and times steps
    ``window`` to ``(spans + 1) * window``: ``spans`` whole windows, each
    with its window end, after the first one (tracing) is done.
    """
    build, x, y, batch = task()
    begin, end = window, window * (spans + 1)
    epochs = math.ceil(end / math.ceil(len(x) / batch))
    names = ["plain", "window"]
    seconds = {name: [] for name in names}
    cpu_seconds = {name: [] for name in names}
    ratios, cpu_ratios, window_ends = [], [], []
    with tempfile.TemporaryDirectory() as root:
        for r in range(rounds):
            order = names[r % 2:] + names[:r % 2]
            for name in order:
                keras.utils.clear_session()
                keras.utils.set_random_seed(r)
                model = build()
                logdir = os.path.join(root, f"{name}_{r}")
                if name == "plain":
                    callback = keras.callbacks.TensorBoard(logdir)
                else:
                    callback = GradientTensorBoard(logdir,
                                                   gradient_window=window)
                    spent = time_window_ends(callback)
                clock = StepClock([begin, end])
                model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0,
                          callbacks=[callback, clock])
                seconds[name].append(clock.seconds(begin, end, 0))
                cpu_seconds[name].append(clock.seconds(begin, end, 1))
            # the window ends inside the timed steps (the first is traced)
            window_ends += spent[1:spans + 1]
            ratios.append(seconds["window"][-1] / seconds["plain"][-1])
            cpu_ratios.append(cpu_seconds["window"][-1]
                              / cpu_seconds["plain"][-1])
            print(f"  window={window} round {r}: " + ", ".join(
                f"{n}={seconds[n][-1]:.3f}s/{cpu_seconds[n][-1]:.3f}cpu-s"
                for n in names) + f" for steps {begin}-{end}", flush=True)
    return {
        "window": window,
        "spans": spans,
        "steps": [begin, end],
        "epochs_per_fit": epochs,
        "median_ratio": statistics.median(ratios),
        "median_cpu_ratio": statistics.median(cpu_ratios),
        "ratios": ratios,
        "cpu_ratios": cpu_ratios,
        "median_seconds_per_window": {
            n: statistics.median(v) / spans for n, v in seconds.items()},
        "median_window_end_seconds": statistics.median(window_ends),
    }


def time_window_ends(callback):
    """Times each window end of ``callback`` (statistics, transfer,
    summary write); returns the list the durations are appended to."""
    spent = []
    original = callback._log_gradients

    def timed(*args):
        began = time.perf_counter()
        original(*args)
        spent.append(time.perf_counter() - began)

    callback._log_gradients = timed
    return spent


def measure_components(task, repeats=6, steps=30, epochs=6):
    """The two parts of the default overhead, each measured in isolation.

    * per step: Keras's compiled train step with and without the optimizer
      hook, timed over the same batches, alternating, ``repeats`` times;
    * per epoch: the callback's epoch-end work (snapshot of the sums,
      statistics, one summary write), median over epochs after the first.

    Both are steadier than whole-fit ratios on a shared machine, and their
    sum estimates the default overhead: hook ratio + epoch-end / epoch time.
    """
    from keras.src.backend.tensorflow.trainer import TFEpochIterator

    from tb_gradients.capture import tensorflow as tf_capture
    build, x, y, batch = task()
    keras.utils.clear_session()
    model = build()
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)
    iterator = TFEpochIterator(x=x, y=y, batch_size=batch, shuffle=False,
                               distribute_strategy=model.distribute_strategy)

    def per_step(function, count):
        began, done = time.perf_counter(), 0
        for _, _, data in iterator:
            logs = function(data)
            done += 1
            if done >= count:
                break
        float(logs["loss"]) if isinstance(logs, dict) else None
        iterator.reset()
        return (time.perf_counter() - began) / done

    model.make_train_function(force=True)
    plain = model.train_function
    hook = tf_capture.TrainingGradientCapture(model)
    hook.attach(steps_per_epoch=len(x) // batch + 1)
    hooked = model.train_function
    per_step(plain, 5), per_step(hooked, 5)
    ratios, plain_steps = [], []
    for _ in range(repeats):
        a = per_step(plain, steps)
        b = per_step(hooked, steps)
        ratios.append(b / a)
        plain_steps.append(a)
    hook.detach()

    keras.utils.clear_session()
    model = build()
    with tempfile.TemporaryDirectory() as logdir:
        callback = GradientTensorBoard(logdir)
        spent = time_window_ends(callback)
        clock = EpochClock()
        model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0,
                  callbacks=[clock, callback])
    epoch_end = statistics.median(spent[1:])
    epoch_time = clock.steady_epoch_time(0)
    hook_ratio = statistics.median(ratios)
    return {
        "hook_step_ratio": hook_ratio,
        "hook_step_ratios": ratios,
        "plain_step_seconds": statistics.median(plain_steps),
        "epoch_end_seconds": epoch_end,
        "epoch_seconds": epoch_time,
        "estimated_default_ratio": hook_ratio + epoch_end / epoch_time,
    }


def measure_components_jax(task, epoch_end, epoch_seconds, repeats=10,
                           steps=4):
    """`measure_components` on the JAX backend.

    Per step: Keras's jitted train step against the capture's (Keras's
    ``train_step`` with the accumulators as extra, donated, inputs and
    outputs), alternating over the same batches, ``repeats`` times, the
    train state threaded from each call to the next as `fit` does (both
    donate it). Short alternations, many of them: a step takes a few
    hundred ms here and other processes come and go on a shared machine.
    Each stretch of steps ends with a wait for its last result, as an
    epoch's end does in `fit`.

    Per epoch: ``epoch_end`` and ``epoch_seconds``, the default's epoch
    ends and steady epochs timed in the rounds of `measure` (an epoch takes
    seconds here, a separate fit would cost minutes).
    """
    import jax

    from tb_gradients.capture import jax as jax_capture
    build, x, y, batch = task()
    keras.utils.clear_session()
    model = build()
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)
    model.make_train_function(force=True)
    plain = model.train_function
    hook = jax_capture.JaxTrainingCapture(model)
    hook.attach(steps_per_epoch=math.ceil(len(x) / batch))
    hooked = model.train_function
    batches = [(x[i:i + batch], y[i:i + batch])
               for i in range(0, steps * batch, batch)]
    # the state both functions donate: the model's variables no longer
    # hold it (as in `fit`)
    state = [model._get_jax_state(
        trainable_variables=True, non_trainable_variables=True,
        optimizer_variables=True, metrics_variables=True,
        purge_model_variables=True)]

    def per_step(function):
        began, cpu = time.perf_counter(), time.process_time()
        current = state[0]
        for data in batches:
            logs, current = function(current, iter([data]))
        jax.block_until_ready((logs, current))
        state[0] = current
        return ((time.perf_counter() - began) / len(batches),
                (time.process_time() - cpu) / len(batches))

    # traces; and compiles again for the committed state each returns
    per_step(plain), per_step(hooked), per_step(plain), per_step(hooked)
    ratios, cpu_ratios, plain_steps, hooked_steps = [], [], [], []
    for r in range(repeats):
        pair = ([plain, hooked] if r % 2 == 0 else [hooked, plain])
        timed = {id(function): per_step(function) for function in pair}
        a, b = timed[id(plain)], timed[id(hooked)]
        ratios.append(b[0] / a[0])
        cpu_ratios.append(b[1] / a[1])
        plain_steps.append(a[0])
        hooked_steps.append(b[0])
    hook_ratio = statistics.median(ratios)
    return {
        "hook_step_ratio": hook_ratio,
        "hook_step_cpu_ratio": statistics.median(cpu_ratios),
        "hook_step_ratios": ratios,
        "hook_step_cpu_ratios": cpu_ratios,
        "plain_step_seconds": statistics.median(plain_steps),
        "hooked_step_seconds": statistics.median(hooked_steps),
        "epoch_end_seconds": epoch_end,
        "epoch_seconds": epoch_seconds,
        "estimated_default_ratio": hook_ratio + epoch_end / epoch_seconds,
    }


def code_version():
    """The commit of the package measured (``+modified`` when tb_gradients/
    differs from it): the figures of two runs compare only with the code."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--",
             "tb_gradients"], capture_output=True, text=True,
            check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+modified" if changed else "")


def versions():
    """Versions of what the figures depend on, beyond `machine.describe`."""
    found = {"keras_backend": keras.backend.backend(),
             "code": code_version()}
    if keras.backend.backend() == "jax":
        import jax
        import jaxlib

        found.update(jax=jax.__version__, jaxlib=jaxlib.__version__,
                     jax_devices=[str(d) for d in jax.devices()])
    return found


def measure_backend(args):
    """Every figure of this process's backend (`main` runs it in a child
    with ``KERAS_BACKEND`` set)."""
    backend = keras.backend.backend()
    if backend != args.backend:
        raise SystemExit(f"--child --backend {args.backend} runs with "
                         f"KERAS_BACKEND={args.backend}; Keras has {backend}")
    jax = backend == "jax"
    # JAX and PyTorch: the configurations of --jax-configs, no tf.GradientTape
    other = backend != "tensorflow"
    names = (args.jax_configs if other else args.configs).split(",")
    if "plain" not in names:
        names = ["plain"] + names
    skipped = [n for n in names if other and n in TENSORFLOW_ONLY]
    names = [n for n in names if n not in skipped]
    window = args.jax_window if other else args.window
    tasks = {"cnn": cnn_task, "lstm": lstm_task}
    results = {"backend": backend, "versions": versions(),
               "rounds": args.rounds, "epochs_per_fit": args.epochs,
               "window": window, "window_spans": args.window_spans,
               "configs": names, "skipped_configs": skipped, "models": {}}
    for model_name in args.models.split(","):
        print(f"{backend} {model_name}:", flush=True)
        results["models"][model_name] = measure(
            tasks[model_name], args.rounds, args.epochs, names)
        result = results["models"][model_name]
        if window:
            result["window"] = measure_windows(
                tasks[model_name], args.rounds, window, args.window_spans)
        if not args.no_components and backend != "torch":
            if jax:
                result["components"] = measure_components_jax(
                    tasks[model_name], result["median_epoch_end_seconds"],
                    result["median_epoch_seconds"]["default"])
            else:
                result["components"] = measure_components(tasks[model_name])
        print_model(backend, model_name, result)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return results


def print_model(backend, model_name, result):
    parts = result.get("components")
    if parts:
        print(f"  hook per step: {parts['hook_step_ratio']:.3f}x, "
              f"epoch end: {parts['epoch_end_seconds'] * 1000:.1f} ms of "
              f"{parts['epoch_seconds']:.2f} s, estimated default: "
              f"{parts['estimated_default_ratio']:.3f}x", flush=True)
    for n, v in result["median_ratio"].items():
        print(f"  {n:>11}: {v:.3f}x plain fit (wall), "
              f"{result['median_cpu_ratio'][n]:.3f}x (CPU)", flush=True)
    compiles = result.get("median_steady_compile_seconds")
    if compiles:
        print("  XLA compile seconds in the steady epochs of a fit: "
              + ", ".join(f"{n} {v:.2f}" for n, v in compiles.items()),
              flush=True)
    windows = result.get("window")
    if windows:
        print(f"  window={windows['window']}: "
              f"{windows['median_ratio']:.3f}x plain steps (wall), "
              f"{windows['median_cpu_ratio']:.3f}x (CPU); window end "
              f"{windows['median_window_end_seconds'] * 1000:.1f} ms of "
              f"{windows['median_seconds_per_window']['plain']:.2f} s",
              flush=True)


def run_child(backend, args):
    """`measure_backend` in a process whose Keras has ``backend``; its
    output streams through, its figures come back from a JSON file."""
    passed = ["--rounds", str(args.rounds), "--epochs", str(args.epochs),
              "--models", args.models, "--configs", args.configs,
              "--jax-configs", args.jax_configs, "--window",
              str(args.window), "--window-spans", str(args.window_spans),
              "--jax-window", str(args.jax_window)]
    if args.no_components:
        passed.append("--no-components")
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, f"{backend}.json")
        subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child",
             "--backend", backend, "--out", out] + passed,
            env=dict(os.environ, KERAS_BACKEND=backend), check=True)
        with open(out) as f:
            return json.load(f)


def default_lines(results):
    """The default configuration against plain TensorBoard, per backend
    and model: each ratio and step time from that backend's own rounds."""
    lines = []
    for backend, data in results["backends"].items():
        for model_name, result in data["models"].items():
            if "default" not in result["median_ratio"]:
                continue
            step = result["median_step_ms"]
            lines.append(
                f"  {backend:>10} {model_name}: "
                f"{result['median_ratio']['default']:.3f}x (wall), "
                f"{result['median_cpu_ratio']['default']:.3f}x (CPU); "
                f"{step['plain']:.1f} ms/step plain, {step['default']:.1f} "
                f"ms/step default (median of {data['rounds']} rounds, "
                f"{data['finished']})")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="all",
                        choices=("all",) + BACKENDS,
                        help="Keras backend(s) to measure, each in a child "
                        "process of its own")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--models", default="cnn,lstm")
    parser.add_argument("--configs",
                        default="plain,default,probe,probe_full,naive",
                        help="configurations measured on TensorFlow")
    parser.add_argument("--jax-configs", default="plain,default",
                        help="configurations measured on JAX and PyTorch "
                        "(naive, a tf.GradientTape, is left out there)")
    parser.add_argument("--window", type=int, default=100,
                        help="optimizer steps per window for the "
                        "gradient_window measurement on TensorFlow (0: "
                        "skip it)")
    parser.add_argument("--jax-window", type=int, default=0,
                        help="the same on JAX (default 0, skipped: with "
                        "--window-spans 2 it trains 300 steps twice per "
                        "round, minutes on a CPU)")
    parser.add_argument("--window-spans", type=int, default=2,
                        help="whole windows timed per fit")
    parser.add_argument("--no-components", action="store_true",
                        help="skip the per-step / per-epoch breakdown")
    parser.add_argument("--child", action="store_true",
                        help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "out", "overhead.json"))
    args = parser.parse_args()
    if args.child:
        results = measure_backend(args)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
        return
    wanted = BACKENDS if args.backend == "all" else (args.backend,)
    describe = machine.describe()
    results = {"machine": describe, "backends": {}}
    if os.path.exists(args.out) and len(wanted) < len(BACKENDS):
        with open(args.out) as f:
            earlier = json.load(f)
        if earlier.get("machine") == describe:
            # the other backends' figures of an earlier run, same machine
            results["backends"] = earlier.get("backends", {})
    command = "python bench/overhead.py " + " ".join(sys.argv[1:])
    for backend in wanted:
        print(f"== {backend}", flush=True)
        data = run_child(backend, args)
        data["command"] = command.strip()
        results["backends"][backend] = data
    results["backends"] = {b: results["backends"][b] for b in BACKENDS
                           if b in results["backends"]}
    print("default configuration / plain keras.callbacks.TensorBoard, "
          "steady epochs, per backend:", flush=True)
    print("\n".join(default_lines(results)), flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
