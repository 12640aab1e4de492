"""Trains the demo runs: ``python -m demo.train --logdir runs [--quick]``."""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from demo import experiments  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logdir", default="runs")
    parser.add_argument("--quick", action="store_true",
                        help="fewer epochs: a smaller demo in about a minute")
    parser.add_argument("--only", default=",".join(experiments.EXPERIMENTS),
                        help="comma-separated experiments to train: "
                        + ", ".join(experiments.EXPERIMENTS))
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(experiments.EXPERIMENTS))
    if unknown:
        parser.error(f"unknown experiments {unknown}; choose from "
                     f"{sorted(experiments.EXPERIMENTS)}")
    start = time.perf_counter()
    for name in names:
        began = time.perf_counter()
        runs = experiments.EXPERIMENTS[name](args.logdir, args.quick)
        print(f"{name}: {len(runs)} runs in "
              f"{time.perf_counter() - began:.0f} s", flush=True)
    print(f"trained into {os.path.abspath(args.logdir)} in "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
