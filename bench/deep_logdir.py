"""A deep-model logdir for the render benchmark: the demo's 24-block
transformer (389 trainable variables), two runs of 100 windows each.

Trains ``demo.experiments.deep_transformer`` (one run with block 16 damped,
one without) on generated tokens, 300 optimizer steps each with
``gradient_window=3``, so that every statistics series has 100 records.
Reused when complete.

Usage (from the repository root):

    .venv/bin/python bench/deep_logdir.py [--rebuild]

Then: ``.venv/bin/python bench/render_time.py bench/out/deep_logdir``.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LOGDIR = os.path.join(HERE, "out", "deep_logdir")

STEPS = 300
WINDOW = 3
BATCH = 16

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, ROOT)

from bench import render_logdir  # noqa: E402


def build(logdir=LOGDIR, rebuild=False):
    """Trains the runs unless a complete logdir is there.

    Returns:
      ``(logdir, seconds spent training; 0 when reused)``.
    """
    if render_logdir.reusable(logdir, rebuild):
        return logdir, 0.0
    from demo import experiments

    start = time.perf_counter()
    x, y = experiments.first_token(STEPS * BATCH)
    for run, damped in (("deep_damped", 16), ("deep", None)):
        model = experiments.deep_transformer(damped_block=damped)
        experiments._fit(model, x, y, logdir, run, 1, BATCH,
                         gradient_window=WINDOW, histograms=False,
                         heatmap_cells=256)
    seconds = time.perf_counter() - start
    render_logdir.mark_complete(logdir)
    return logdir, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    logdir, seconds = build(rebuild=args.rebuild)
    print(f"{os.path.relpath(logdir, ROOT)}: "
          + (f"trained in {seconds:.0f} s" if seconds else "reused"))


if __name__ == "__main__":
    main()
