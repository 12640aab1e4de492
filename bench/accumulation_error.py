"""Error of the accumulated gradient C after many windows, against float64.

`tf_kernel.kahan_add` (float32 sum, bfloat16 compensation) and a naive
float32 sum add the same float32 window gradients; both are compared with
the float64 sum of those same terms. Errors are relative to ``Σ_k |G_k|``
per element (the scale the dissolving views compare ``|C|`` with) and, for
the statistic users read, to ``‖C‖₁``.

Window gradients: a random walk with a small drift (cancelling, as in the
seed's dissolving gradient), ``elements`` per window.

Usage: python bench/accumulation_error.py [--windows 1000] [--elements 100000]
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench import machine  # noqa: E402
from tb_gradients.window.kernels import tensorflow as tf_kernel  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1000)
    parser.add_argument("--elements", type=int, default=100000)
    parser.add_argument("--drift", type=float, default=1e-3)
    parser.add_argument("--out", default=os.path.join(
        HERE, "out", "accumulation_error.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    naive = tf.zeros([args.elements], tf.float32)
    kahan = tf.zeros([args.elements], tf.float32)
    compensation = tf.zeros([args.elements], tf.bfloat16)
    exact = np.zeros(args.elements)
    absolute = np.zeros(args.elements)
    add = tf.function(tf_kernel.kahan_add)
    for _ in range(args.windows):
        term = (rng.normal(size=args.elements) * rng.lognormal(0, 1)
                + args.drift).astype(np.float32)
        exact += term
        absolute += np.abs(term)
        naive = naive + term
        kahan, compensation = add(kahan, compensation, tf.constant(term))
    results = {"machine": machine.describe(), "windows": args.windows,
               "elements": args.elements}
    representation = np.abs(exact.astype(np.float32) - exact) / absolute
    results["float32_representation_max"] = float(representation.max())
    for name, value in (("naive", naive), ("kahan", kahan)):
        got = value.numpy().astype(np.float64)
        relative = np.abs(got - exact) / absolute
        results[name] = {
            "max_error_over_abs_sum": float(relative.max()),
            "mean_error_over_abs_sum": float(relative.mean()),
            "l1_relative_error": float(abs(np.abs(got).sum()
                                           - np.abs(exact).sum())
                                       / np.abs(exact).sum()),
        }
        print(f"{name:>6}: max |C - C64| / Σ|G| = "
              f"{results[name]['max_error_over_abs_sum']:.2e}, mean "
              f"{results[name]['mean_error_over_abs_sum']:.2e}, ‖C‖₁ relative "
              f"error {results[name]['l1_relative_error']:.2e}")
    print(f"float32 representation of the exact sum: max "
          f"{results['float32_representation_max']:.2e}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
