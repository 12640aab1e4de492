"""A training run for the crash-and-resume tests, run as a real process.

    python -m tests.resume_training LOGDIR --mode backup|checkpoint
        [--window N] [--kill-at EPOCH BATCH] [--epochs E]

``--mode backup`` resumes with `keras.callbacks.BackupAndRestore` (its
directory beside LOGDIR); ``--mode checkpoint`` saves the whole model
(weights and optimizer) at each epoch end and, when a checkpoint exists,
loads the latest and calls ``fit(initial_epoch=...)`` itself.
``--kill-at E B`` makes the process SIGKILL itself after batch B of epoch E
(a real kill: no callback, no ``finally``, no flush runs after it).
"""

import argparse
import os
import signal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tb_gradients import GradientTensorBoard  # noqa: E402

BATCH = 8
STEPS_PER_EPOCH = 10


def data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(BATCH * STEPS_PER_EPOCH, 6)).astype("float32")
    y = (x[:, 0] - x[:, 2] > 0).astype("int64")
    return x, y


def new_model():
    keras.utils.set_random_seed(7)
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="tanh", name="hidden"),
        keras.layers.Dense(2, activation="softmax", name="out"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss="sparse_categorical_crossentropy")
    return model


class KillAt(keras.callbacks.Callback):
    """SIGKILLs this process after a given batch of a given epoch."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self._current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._current == self.epoch and batch == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


def checkpoint_template(logdir):
    """ModelCheckpoint's file name: ``{epoch}`` is the number of epochs
    completed (Keras formats it 1-based)."""
    return os.path.join(logdir + "-checkpoints", "epoch-{epoch:d}.keras")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("logdir")
    parser.add_argument("--mode", choices=("backup", "checkpoint"),
                        default="backup")
    parser.add_argument("--window", default="epoch")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--kill-at", type=int, nargs=2, default=None)
    args = parser.parse_args()
    tf.config.experimental.enable_op_determinism()
    window = args.window if args.window == "epoch" else int(args.window)
    x, y = data()
    callbacks = [GradientTensorBoard(log_dir=args.logdir,
                                     gradient_window=window,
                                     heatmap_cells=16)]
    initial_epoch = 0
    if args.mode == "backup":
        model = new_model()
        callbacks.append(keras.callbacks.BackupAndRestore(
            args.logdir + "-backup"))
    else:
        template = checkpoint_template(args.logdir)
        os.makedirs(os.path.dirname(template), exist_ok=True)
        completed = [n for n in range(1, args.epochs + 1)
                     if os.path.exists(template.format(epoch=n))]
        if completed:
            model = keras.saving.load_model(
                template.format(epoch=completed[-1]))
            initial_epoch = completed[-1]
        else:
            model = new_model()
        callbacks.append(keras.callbacks.ModelCheckpoint(template))
    if args.kill_at:
        callbacks.append(KillAt(*args.kill_at))
    model.fit(x, y, batch_size=BATCH, epochs=args.epochs, shuffle=False,
              initial_epoch=initial_epoch, callbacks=callbacks, verbose=0)


if __name__ == "__main__":
    main()
