"""A training process that the test driving it paces, and a TensorBoard
process that reads its log directory while it writes.

Run as ``python -m tests.paced_training LOG_DIR CONTROL_DIR [options]``: a
small Keras model on generated data trains with
``GradientTensorBoard(gradient_window=N)``. A second callback, after it in
the callback list, reports every window end once the callback has written
and flushed the window: it writes the file ``CONTROL_DIR/window-<k>``
holding the global optimizer step of window ``k`` (0-based), and then

* ``--gate``: waits for ``CONTROL_DIR/go-<k>`` before training on, so the
  parent sees every window, one at a time, while the process is alive;
* ``--hold-at STEP``: after the batch that brings the optimizer to STEP,
  writes ``CONTROL_DIR/held`` and waits (to be killed) instead of going on;
* ``--batch-sleep S``: sleeps S seconds after every batch, so that a free
  running process is still training when the parent acts.

`PacedTraining` is the parent's side: it starts the process, waits for its
markers and releases it. Waits have generous limits only so that a broken
run fails instead of hanging; no outcome depends on how long anything takes.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from tests import browser_harness

FEATURES = 6
BATCH = 8
# Generous: a process imports TensorFlow before it does anything, and the
# machine may be shared. Not a performance check.
WAIT_LIMIT_S = 300
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- the training process -----------------------------------------------------


def _write_marker(path, text):
    """Writes ``text`` to ``path`` atomically (a reader never sees half)."""
    partial = path + ".partial"
    with open(partial, "w") as f:
        f.write(text)
    os.replace(partial, path)


def _wait_for_file(path, what):
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit(f"paced training: gave up waiting for {what}")
        time.sleep(0.02)


def _pacer(keras, control, window, gate, hold_at, batch_sleep):
    class Pacer(keras.callbacks.Callback):
        """Reports window ends after `GradientTensorBoard` has written them."""

        def __init__(self):
            super().__init__()
            self.windows = 0

        def _step(self):
            return int(self.model.optimizer.iterations.numpy())

        def _window_ended(self, step):
            k = self.windows
            self.windows += 1
            _write_marker(os.path.join(control, f"window-{k}"), str(step))
            if gate:
                _wait_for_file(os.path.join(control, f"go-{k}"),
                               f"go-{k}")

        def on_train_batch_end(self, batch, logs=None):
            step = self._step()
            if step % window == 0:
                self._window_ended(step)
            if step == hold_at:
                _write_marker(os.path.join(control, "held"), str(step))
                time.sleep(WAIT_LIMIT_S)
                sys.exit("paced training: held, but nobody ended the process")
            if batch_sleep:
                time.sleep(batch_sleep)

        def on_train_end(self, logs=None):
            step = self._step()
            if step % window:
                self._window_ended(step)  # the last, partial window

    return Pacer()


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("log_dir")
    parser.add_argument("control")
    parser.add_argument("--window", type=int, required=True)
    parser.add_argument("--steps-per-epoch", type=int, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--gate", action="store_true")
    parser.add_argument("--hold-at", type=int, default=-1)
    parser.add_argument("--batch-sleep", type=float, default=0.0)
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import numpy as np

    from tb_gradients import GradientTensorBoard

    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(7)
    samples = args.steps_per_epoch * BATCH
    x = rng.normal(size=(samples, FEATURES)).astype("float32")
    y = (x[:, 0] - x[:, 1] > 0).astype("int64")
    model = keras.Sequential([
        keras.Input((FEATURES,)),
        keras.layers.Dense(8, activation="tanh", name="hidden"),
        keras.layers.Dense(2, activation="softmax", name="out"),
    ])
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy())
    model.fit(x, y, batch_size=BATCH, epochs=args.epochs, shuffle=False,
              verbose=0, callbacks=[
                  GradientTensorBoard(args.log_dir,
                                      gradient_window=args.window,
                                      heatmap_cells=16),
                  _pacer(keras, args.control, args.window, args.gate,
                         args.hold_at, args.batch_sleep)])
    _write_marker(os.path.join(args.control, "done"), "done")


# -- the parent's side --------------------------------------------------------


def window_ends(window, steps_per_epoch, epochs):
    """The global steps at which the windows of a `fit` end."""
    total = steps_per_epoch * epochs
    ends = list(range(window, total + 1, window))
    return ends + [total] if total % window else ends


class PacedTraining:
    """The parent's handle on one training process (see the module doc).

    Args:
      log_dir: the callback's ``log_dir``.
      control: an empty directory for the markers.
      **options: ``window``, ``steps_per_epoch``, ``epochs``, ``gate``,
        ``hold_at``, ``batch_sleep`` as on the command line.
    """

    def __init__(self, log_dir, control, **options):
        self.control = str(control)
        command = [sys.executable, "-m", "tests.paced_training",
                   str(log_dir), self.control]
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                command.append(flag)
            elif value is not False and value is not None:
                command += [flag, str(value)]
        self._log = tempfile.TemporaryFile()
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                   KERAS_BACKEND="tensorflow")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env,
                                        stdout=self._log,
                                        stderr=subprocess.STDOUT)

    def output(self):
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-4000:]

    def marker(self, name):
        """The content of a marker file, or None if it is not there yet."""
        path = os.path.join(self.control, name)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return f.read()

    def wait_for(self, name):
        """Waits until the process writes marker ``name``; returns it."""
        deadline = time.monotonic() + WAIT_LIMIT_S
        while time.monotonic() < deadline:
            value = self.marker(name)
            if value is not None:
                return value
            if self.process.poll() is not None:
                value = self.marker(name)
                if value is not None:
                    return value
                raise AssertionError(
                    f"the training process exited "
                    f"({self.process.returncode}) without writing {name!r}:"
                    f"\n{self.output()}")
            time.sleep(0.02)
        raise AssertionError(f"no marker {name!r} from the training "
                             f"process:\n{self.output()}")

    def release(self, k):
        """Lets a gated process go on after window ``k``."""
        _write_marker(os.path.join(self.control, f"go-{k}"), "go")

    def windows_reported(self):
        """Global steps of the windows reported so far, in order."""
        steps, k = [], 0
        while (value := self.marker(f"window-{k}")) is not None:
            steps.append(int(value))
            k += 1
        return steps

    def finish(self):
        """Waits for a normal exit; asserts it succeeded."""
        try:
            code = self.process.wait(timeout=WAIT_LIMIT_S)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        assert code == 0, self.output()

    def kill(self):
        """SIGKILL, as the machine's out-of-memory killer or a preempted
        job would end it; returns the exit status."""
        self.process.kill()
        return self.process.wait(timeout=WAIT_LIMIT_S)

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# -- a TensorBoard process


def wait(condition, what):
    """Polls ``condition()`` until it returns something other than None."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    while time.monotonic() < deadline:
        value = condition()
        if value is not None:
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def _reject_constant(name):
    raise AssertionError(f"non-strict JSON constant {name!r} in a response")


@contextlib.contextmanager
def tensorboard(logdir, load_fast, reload_interval=1):
    """A ``tensorboard`` process on ``logdir``; yields ``get``.

    ``get(route, **params)`` answers the (strict) JSON of a plugin route,
    or None while the server does not answer yet or answers 404 (the run
    is not loaded yet); ``get(route, missing_ok=False, ...)`` raises
    `urllib.error.HTTPError` for any status but 200. Nothing is awaited
    here: the caller polls for what it expects.
    """
    port = browser_harness.free_port()
    log = tempfile.TemporaryFile()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
         "--host", "127.0.0.1", "--port", str(port),
         f"--load_fast={'true' if load_fast else 'false'}",
         f"--reload_interval={reload_interval}"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}{browser_harness.PLUGIN_PREFIX}"

    def get(route, missing_ok=True, **params):
        if process.poll() is not None:
            log.seek(0)
            raise AssertionError(
                f"TensorBoard exited ({process.returncode}):\n"
                + log.read().decode("utf-8", "replace")[-4000:])
        query = urllib.parse.urlencode(params)
        url = base + route + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                assert response.status == 200, (url, response.status)
                return json.loads(response.read().decode("utf-8"),
                                  parse_constant=_reject_constant)
        except urllib.error.HTTPError as error:
            if missing_ok and error.code == 404:
                return None
            raise
        except (urllib.error.URLError, ConnectionError, OSError):
            return None

    try:
        yield get
    finally:
        browser_harness.stop_process(process)
        log.close()


if __name__ == "__main__":
    main()
