"""Runs every benchmark and writes bench/RESULTS.md.

Usage (from the repository root): ``make bench`` or
``.venv/bin/python bench/run_all.py [--quick] [--report-only]``.

Each benchmark script measures its figure against a baseline taken in the
same run (ratios, or medians and percentiles) and writes a JSON file under
bench/out/ with a description of the machine; this script runs them in turn
and renders those files as one Markdown report.
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
RESULTS = os.path.join(HERE, "RESULTS.md")

BENCHMARKS = [
    ("overhead", ["bench/overhead.py"], ["--rounds", "3", "--epochs", "3"]),
    ("scale", ["bench/scale.py"], ["--models", "resnet50", "--rounds", "1",
                                   "--fit-loop-rounds", "1"]),
    ("accumulation_error", ["bench/accumulation_error.py"], []),
    ("storage", ["bench/storage.py"], []),
    ("plugin_latency", ["bench/plugin_latency.py"], []),
    ("render_time", ["bench/render_time.py"], []),
    # A long run (2,000 windows x 60 variables), measured right after the
    # standard logdir so that the two figures compare.
    ("render_logdir", ["bench/render_logdir.py"], []),
    ("render_time_long", ["bench/render_time.py", "bench/out/render_logdir",
                          "--output", "bench/out/render_time_long.json"], []),
]


def run(quick):
    for name, script, quick_args in BENCHMARKS:
        command = [sys.executable] + script + (quick_args if quick else [])
        print(f"== {name}: {' '.join(command)}", flush=True)
        subprocess.run(command, cwd=ROOT, check=True)


def load(name):
    path = os.path.join(OUT, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def machine_line(machine):
    if not machine:
        return "unknown machine"
    return (f"{machine.get('cpu_model', machine.get('processor'))}, "
            f"{machine.get('cpu_count')} CPUs, {machine.get('platform')}, "
            f"Python {machine.get('python')}, TensorFlow "
            f"{machine.get('tensorflow')}, Keras {machine.get('keras')}, "
            f"TensorBoard {machine.get('tensorboard')}, GPUs: "
            f"{machine.get('gpus') or 'none'}")


def overhead_section(data):
    lines = ["## Callback overhead on `fit`", "",
             "Median over paired, alternating rounds of (steady-state epoch "
             "time with the configuration) / (same with plain "
             "`keras.callbacks.TensorBoard`), measured in the same round. "
             "Goal for `default`: at most 1.03. `probe + ...` is `source=\"both\"` "
             "with heatmaps and histograms every epoch, and, for the LSTM, "
             "timestep gradients of both recurrent layers (16 probe samples). "
             "The naive approach runs the whole training set through a "
             "GradientTape at every epoch end.", "",
             f"Command: `python bench/overhead.py --rounds "
             f"{data['rounds']} --epochs {data['epochs_per_fit']}"
             + (f" --window {data['window']} --window-spans "
                f"{data['window_spans']}" if data.get("window") else "")
             + "`", "",
             "| model | clock | default (training source) | probe | "
             "probe + heatmaps + histograms + training | naive full-data "
             "tape | naive ÷ default | plain epoch (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for model, result in data["models"].items():
        for clock, key, seconds in (
                ("wall", "median_ratio", "median_epoch_seconds"),
                ("CPU", "median_cpu_ratio", "median_epoch_cpu_seconds")):
            if key not in result:
                continue
            ratio = result[key]
            lines.append(
                f"| {model} | {clock} | "
                f"{ratio.get('default', float('nan')):.3f} | "
                f"{ratio.get('probe', float('nan')):.3f} | "
                f"{ratio.get('probe_full', float('nan')):.3f} | "
                f"{ratio.get('naive', float('nan')):.3f} | "
                f"{ratio.get('naive', float('nan')) / ratio.get('default', float('nan')):.2f} | "
                f"{result[seconds]['plain']:.2f} |")
    parts = {m: r["components"] for m, r in data["models"].items()
             if "components" in r}
    if parts:
        lines += ["", "The default's two costs measured apart (steadier than "
                  "whole-fit ratios on a shared machine): the compiled train "
                  "step with / without the optimizer hook, alternating over "
                  "the same batches, and the callback's epoch-end work.", "",
                  "| model | hook: step time ratio | epoch end (ms) | epoch "
                  "(s) | estimated default ratio |", "|---|---|---|---|---|"]
        for model, part in parts.items():
            lines.append(
                f"| {model} | {part['hook_step_ratio']:.3f} | "
                f"{part['epoch_end_seconds'] * 1000:.1f} | "
                f"{part['epoch_seconds']:.2f} | "
                f"{part['estimated_default_ratio']:.3f} |")
    windows = {m: r["window"] for m, r in data["models"].items()
               if "window" in r}
    if windows:
        first = next(iter(windows.values()))
        lines += ["", f"Windows of {first['window']} optimizer steps "
                  f"(`gradient_window={first['window']}`, default "
                  "statistics): time of optimizer steps "
                  f"{first['steps'][0]} to {first['steps'][1]} "
                  f"({first['spans']} whole windows, each window end "
                  "included; the first window, which traces, left out) "
                  "over the time of the same steps with plain "
                  "`keras.callbacks.TensorBoard`, median over "
                  f"{data['rounds']} paired, alternating rounds. Goal: at "
                  "most 1.03.", "",
                  "| model | window (steps) | wall | CPU | plain time per "
                  "window (s) | window end (ms) |",
                  "|---|---|---|---|---|---|"]
        for model, result in windows.items():
            lines.append(
                f"| {model} | {result['window']} | "
                f"{result['median_ratio']:.3f} | "
                f"{result['median_cpu_ratio']:.3f} | "
                f"{result['median_seconds_per_window']['plain']:.2f} | "
                f"{result['median_window_end_seconds'] * 1000:.1f} |")
    lines += ["", f"Machine: {machine_line(data.get('machine'))}", ""]
    return lines


def _optional(result, key, spec):
    """A figure older result files lack, as text ("–" when absent)."""
    value = result.get(key)
    return "–" if value is None else format(value, spec)


def scale_section(data):
    lines = ["## Cost at scale", "",
             "`python bench/scale.py`: each model trained in its own process "
             "with plain `keras.callbacks.TensorBoard` and with "
             "`GradientTensorBoard` (defaults), alternating; figures are the "
             "differences, per parameter. Epoch end: the callback's "
             "window-end work, median over epochs after the first. First "
             "epoch: extra one-time cost (tracing). Peak memory: peak RSS "
             "with the callback minus plain's. State: bytes held in the "
             "callback's variables. State save: the epoch-end write of the "
             "gradient state a resume continues from (time per parameter, "
             "file bytes per parameter). Goals: epoch end at most 5 "
             "ns/param, first epoch at most 1 s at ResNet50 size, peak "
             "memory at most 12 bytes/param.", "",
             "| model | parameters | epoch end | ns/param | first epoch "
             "extra (s) | peak memory (bytes/param) | state (bytes/param) "
             "| steady epoch ratio | state save (ns/param) | state file "
             "(bytes/param) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for model, result in data.get("models", {}).items():
        lines.append(
            f"| {model} | {result['params'] / 1e6:.1f} M | "
            f"{result['epoch_end_seconds'] * 1000:.0f} ms | "
            f"{result['epoch_end_ns_per_param']:.2f} | "
            f"{result['first_epoch_extra_seconds']:.2f} | "
            f"{result['peak_memory_overhead_bytes_per_param']:.1f} | "
            f"{result['state_bytes_per_param']:.1f} | "
            f"{result['steady_epoch_ratio']:.3f} | "
            f"{_optional(result, 'state_save_ns_per_param', '.2f')} | "
            f"{_optional(result, 'state_file_bytes_per_param', '.1f')} |")
    loop = data.get("fit_loop")
    if loop:
        lines += ["", f"`fit(epochs=1)` {loop['fits']} times in a loop on the "
                  f"seed CNN, total time with the callback / with plain "
                  f"TensorBoard, median of {len(loop['ratios'])} alternating "
                  f"rounds: **{loop['ratio']:.3f}×** (goal at most 1.03×)."]
    lines += ["", f"Machine: {machine_line(data.get('machine'))}", ""]
    return lines


def accumulation_section(data):
    lines = ["## Accuracy of the accumulated gradient", "",
             f"`python bench/accumulation_error.py`: {data['windows']} "
             f"windows of {data['elements']:,} elements (a cancelling random "
             "walk), float32 sums against the float64 sum of the same terms, "
             "errors relative to Σ|G| per element.", "",
             "| summation | max error | mean error | ‖C‖₁ relative error |",
             "|---|---|---|---|"]
    for name in ("naive", "kahan"):
        r = data[name]
        lines.append(f"| {name} | {r['max_error_over_abs_sum']:.2e} | "
                     f"{r['mean_error_over_abs_sum']:.2e} | "
                     f"{r['l1_relative_error']:.2e} |")
    lines += ["", "float32's own representation of the exact sum: max "
              f"{data['float32_representation_max']:.2e}.", "",
              f"Machine: {machine_line(data.get('machine'))}", ""]
    return lines


def storage_section(data):
    mb = data["bytes_per_epoch_gradients"] / 1e6
    return ["## Bytes per epoch", "",
            f"`python bench/storage.py`: {data['model']} "
            f"({data['parameters']:,} parameters, "
            f"{data['trainable_variables']} trainable variables), default "
            f"settings (heatmap encoding `{data['heatmap_encoding']}`): "
            f"**{mb:.2f} MB per epoch** of gradient summaries "
            f"(goal: at most 8 MB).", "",
            f"Machine: {machine_line(data.get('machine'))}", ""]


def latency_section(data):
    lines = ["## Plugin route latency", "",
             f"`{data.get('command', 'python bench/plugin_latency.py')}` on "
             "3 runs x 100 epochs x 60 variables, through TensorBoard's WSGI "
             f"app ({data.get('loader')}). Cold: the plugin's cache cleared "
             "before every request. Goal: p95 at most 100 ms.", "",
             "| route | cold median (ms) | cold p95 (ms) | warm median (ms) "
             "| warm p95 (ms) | answer bytes |", "|---|---|---|---|---|---|"]
    for route, timings in sorted(data["routes"].items()):
        cold, warm = timings.get("cold", {}), timings.get("warm", {})
        lines.append(
            f"| {route} | {cold.get('median_ms', float('nan')):.1f} | "
            f"{cold.get('p95_ms', float('nan')):.1f} | "
            f"{warm.get('median_ms', float('nan')):.1f} | "
            f"{warm.get('p95_ms', float('nan')):.1f} | "
            f"{warm.get('median_bytes', cold.get('median_bytes', 0)):,} |")
    lines += ["", f"Machine: {machine_line(data.get('machine'))}", ""]
    return lines


def render_section(data):
    first = data["first_render_ms"]
    lines = ["## Tab render time", "",
             f"`python bench/render_time.py`: {data['what']}; "
             f"{data['runs']} runs, up to {data['max_epochs']} epochs, "
             f"{data['samples']} samples in headless Chromium. First complete "
             f"render: median **{first['median']:.0f} ms** (min "
             f"{first['min']:.0f}, max {first['max']:.0f}); goal at most "
             "1,500 ms."]
    long_run = load("render_time_long")
    if long_run:
        long_first = long_run["first_render_ms"]
        lines += ["", "A long run, measured right after it on the same "
                  "machine: `python bench/render_time.py "
                  f"{long_run['logdir']}` ({long_run['runs']} run of "
                  f"{long_run['max_epochs']:,} windows x 60 variables, made "
                  "by `bench/render_logdir.py`): median "
                  f"**{long_first['median']:.0f} ms** (min "
                  f"{long_first['min']:.0f}, max {long_first['max']:.0f}), "
                  f"{long_first['median'] / first['median']:.2f}x the "
                  "standard logdir's; goal at most 1,500 ms.", "",
                  "| logdir | navigation -> rendered (median ms) | iframe "
                  "-> rendered (median ms) | first sample, cold caches (ms) "
                  "|", "|---|---|---|---|"]
        for entry in (data, long_run):
            lines.append(
                f"| {entry['logdir']} | "
                f"{entry['first_render_ms']['median']:.0f} | "
                f"{entry['iframe_to_render_ms']['median']:.0f} | "
                f"{entry['first_sample_render_ms']:.0f} |")
    return lines + ["", f"Machine: {machine_line(data.get('machine'))}", ""]


def report():
    lines = ["# Benchmark results", "",
             "Written by `bench/run_all.py` from the JSON files each "
             "benchmark writes under bench/out/. Every figure is a ratio "
             "against a baseline measured in the same run, or a median / "
             "percentile of repeated measurements; shared machines are "
             "noisy, so compare only figures from the same machine.", ""]
    sections = [("overhead", overhead_section), ("scale", scale_section),
                ("accumulation_error", accumulation_section),
                ("storage", storage_section),
                ("plugin_latency", latency_section),
                ("render_time", render_section)]
    for name, render in sections:
        data = load(name)
        if data is None:
            lines += [f"## {name}", "", "not measured", ""]
        else:
            lines += render(data)
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {RESULTS}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        run(args.quick)
    report()


if __name__ == "__main__":
    main()
