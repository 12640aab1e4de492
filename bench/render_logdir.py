"""A long-run logdir for the render benchmark: 2,000 windows x 60 variables.

Trains a 30-layer MLP (tiny widths: 60 trainable variables, kernels and
biases) for 2,000 optimizer steps with ``GradientTensorBoard(
gradient_window=1)``, so that every plugin series has 2,000 records, with
small heatmaps and the default histograms. Reused when complete.

Usage (from the repository root):

    .venv/bin/python bench/render_logdir.py [--rebuild] [--steps 2000]
        [--window 1]

Then: ``.venv/bin/python bench/render_time.py bench/out/render_logdir``.
"""

import argparse
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LOGDIR = os.path.join(HERE, "out", "render_logdir")

LAYERS = 30          # Dense layers: 60 trainable variables
WIDTH = 4
FEATURES = 6
BATCH = 8
EPOCHS = 4
HEATMAP_CELLS = 16

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, ROOT)


def reusable(logdir, rebuild=False):
    """Whether ``logdir`` holds a complete earlier build (`mark_complete`);
    when it does not (or ``rebuild``), whatever is there is removed."""
    if not rebuild and os.path.exists(os.path.join(logdir, ".complete")):
        return True
    if os.path.exists(logdir):
        shutil.rmtree(logdir)
    return False


def mark_complete(logdir):
    with open(os.path.join(logdir, ".complete"), "w") as f:
        f.write("ok")


def build(logdir=LOGDIR, steps=2000, window=1, rebuild=False):
    """Trains the run unless a complete logdir is there.

    Returns:
      ``(logdir, seconds spent training; 0 when reused)``.
    """
    if reusable(logdir, rebuild):
        return logdir, 0.0
    import keras
    import numpy as np

    from tb_gradients import GradientTensorBoard

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    per_epoch = steps // EPOCHS
    x = rng.normal(size=(per_epoch * BATCH, FEATURES)).astype("float32")
    y = (x[:, 0] * x[:, 1] > 0).astype("int64")
    model = keras.Sequential(
        [keras.Input((FEATURES,))]
        + [keras.layers.Dense(WIDTH, activation="tanh", name=f"dense_{i}")
           for i in range(LAYERS - 1)]
        + [keras.layers.Dense(2, activation="softmax", name="output")])
    assert len(model.trainable_variables) == 2 * LAYERS
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy())
    start = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False,
              verbose=0, callbacks=[GradientTensorBoard(
                  log_dir=os.path.join(logdir, "long"),
                  gradient_window=window, heatmap_cells=HEATMAP_CELLS)])
    seconds = time.perf_counter() - start
    mark_complete(logdir)
    return logdir, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--window", type=int, default=1)
    args = parser.parse_args()
    logdir, seconds = build(steps=args.steps, window=args.window,
                            rebuild=args.rebuild)
    print(f"{os.path.relpath(logdir, ROOT)}: "
          + (f"trained in {seconds:.0f} s" if seconds else "reused"))


if __name__ == "__main__":
    main()
