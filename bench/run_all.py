"""Runs every benchmark and writes bench/RESULTS.md.

Usage (from the repository root): ``make bench`` or
``.venv/bin/python bench/run_all.py [--quick] [--report-only]
[--sections A,B]``.

Each benchmark script measures its figure against a baseline taken in the
same run (ratios, or medians and percentiles) and writes a JSON file under
bench/out/ with a description of the machine; this script runs them in turn
and renders those files as one Markdown report. ``--report-only --sections
overhead,scale_jax`` re-renders the named sections alone and keeps the rest
of RESULTS.md, so that one benchmark run again updates its own section.
"""

import argparse
import json
import os
import statistics
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
    # On JAX the seed CNN takes several times TensorFlow's time per step on
    # a CPU (XLA's convolutions): the fit loop only in the full run.
    ("scale_jax", ["bench/scale.py", "--backend", "jax"],
     ["--models", "resnet50", "--rounds", "1", "--fit-loop-rounds", "0"]),
    ("scale_torch", ["bench/scale.py", "--backend", "torch"],
     ["--models", "resnet50", "--rounds", "1", "--fit-loop-rounds", "0"]),
    ("jax_step", ["bench/jax_step.py"], ["--models", "cnn"]),
    ("accumulation_error", ["bench/accumulation_error.py"], []),
    ("storage", ["bench/storage.py"], []),
    ("plugin_latency", ["bench/plugin_latency.py"], []),
    ("render_time", ["bench/render_time.py"], []),
    # A long run (2,000 windows x 60 variables), measured right after the
    # standard logdir so that the two figures compare.
    ("render_logdir", ["bench/render_logdir.py"], []),
    ("render_time_long", ["bench/render_time.py", "bench/out/render_logdir",
                          "--output", "bench/out/render_time_long.json"], []),
    # A deep model (2 runs of the 24-block transformer, 389 variables x 100
    # windows), measured on the same machine.
    ("deep_logdir", ["bench/deep_logdir.py"], []),
    ("render_time_deep", ["bench/render_time.py", "bench/out/deep_logdir",
                          "--output", "bench/out/render_time_deep.json"], []),
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


def _overhead_backends(data):
    """{backend: figures} of an overhead.json; files written before the
    per-backend runs hold TensorFlow's figures alone, at the top level."""
    if "backends" in data:
        return data["backends"]
    command = (f"python bench/overhead.py --rounds {data['rounds']} "
               f"--epochs {data['epochs_per_fit']}"
               + (f" --window {data['window']} --window-spans "
                  f"{data['window_spans']}" if data.get("window") else ""))
    return {"tensorflow": dict(data, backend="tensorflow", command=command)}


def _backend_name(entry):
    versions = entry.get("versions", {})
    if entry.get("backend") == "jax" and versions.get("jax"):
        return f"JAX {versions['jax']}"
    return {"tensorflow": "TensorFlow", "jax": "JAX"}.get(
        entry.get("backend"), entry.get("backend"))


def overhead_section(data):
    backends = _overhead_backends(data)
    lines = ["## Callback overhead on `fit`", "",
             "Median over paired, alternating rounds of (steady-state epoch "
             "time with the configuration) / (same with plain "
             "`keras.callbacks.TensorBoard`), measured in the same round. "
             "Goal for `default`: at most 1.03, on each backend. Each "
             "backend is measured in a process of its own, against its own "
             "plain TensorBoard. `probe + ...` is `source=\"both\"` "
             "with heatmaps and histograms every epoch, and, for the LSTM, "
             "timestep gradients of both recurrent layers (16 probe samples). "
             "The naive approach runs the whole training set through a "
             "GradientTape at every epoch end (TensorFlow only).", ""]
    for backend, entry in backends.items():
        when = [entry.get("finished"), entry.get("versions", {}).get("code")]
        lines.append(f"{_backend_name(entry)}: `{entry['command']}`" + (
            f" ({', code '.join(w for w in when if w)})" if any(when)
            else ""))
        lines.append("")
    tensorflow = backends.get("tensorflow")
    if tensorflow:
        lines += ["All configurations, TensorFlow:", "",
                  "| model | clock | default (training source) | probe | "
                  "probe + heatmaps + histograms + training | naive "
                  "full-data tape | naive ÷ default | plain epoch (s) |",
                  "|---|---|---|---|---|---|---|---|"]
        for model, result in tensorflow["models"].items():
            for clock, key, seconds in (
                    ("wall", "median_ratio", "median_epoch_seconds"),
                    ("CPU", "median_cpu_ratio", "median_epoch_cpu_seconds")):
                if key not in result:
                    continue
                ratio = result[key]
                naive = ("–" if not {"naive", "default"} <= set(ratio) else
                         f"{ratio['naive'] / ratio['default']:.2f}")
                lines.append(
                    f"| {model} | {clock} | "
                    f"{_optional(ratio, 'default', '.3f')} | "
                    f"{_optional(ratio, 'probe', '.3f')} | "
                    f"{_optional(ratio, 'probe_full', '.3f')} | "
                    f"{_optional(ratio, 'naive', '.3f')} | "
                    f"{naive} | {result[seconds]['plain']:.2f} |")
        lines.append("")
    lines += _default_per_backend(backends)
    lines += _components(backends)
    lines += _windows(backends)
    lines += [f"Machine: {machine_line(data.get('machine'))}", ""]
    return lines


def _default_per_backend(backends):
    rows = []
    for backend, entry in backends.items():
        for model, result in entry["models"].items():
            if "default" not in result.get("median_ratio", {}):
                continue
            steps = result.get("median_step_ms", {})
            compiles = result.get("median_steady_compile_seconds") or {}
            epoch_end = result.get("median_epoch_end_seconds")
            rows.append(
                f"| {_backend_name(entry)} | {model} | "
                f"{result['median_ratio']['default']:.3f} | "
                f"{result['median_cpu_ratio']['default']:.3f} | "
                f"{_optional(steps, 'plain', '.1f')} | "
                f"{_optional(steps, 'default', '.1f')} | "
                + ("–" if epoch_end is None else f"{epoch_end * 1000:.1f}")
                + " | "
                + (f"{compiles['plain']:.2f} / {compiles['default']:.2f}"
                   if compiles else "–")
                + f" | {entry['rounds']} |")
    if not rows:
        return []
    return ["The default configuration on each backend: ratios as above; "
            "time per optimizer step of the steady epochs (every callback "
            "included); the callback's epoch-end work, timed inside the same "
            "fits; on JAX, the XLA compile seconds inside the steady epochs "
            "of one fit (part of their time: a train step compiled again "
            "after the first epoch).", "",
            "| backend | model | default ÷ plain (wall) | (CPU) | plain "
            "ms/step | default ms/step | epoch end (ms) | compile s in steady "
            "epochs, plain / default | rounds |",
            "|---|---|---|---|---|---|---|---|---|"] + rows + [""]


def _components(backends):
    rows = []
    for backend, entry in backends.items():
        for model, result in entry["models"].items():
            part = result.get("components")
            if not part:
                continue
            cpu = part.get("hook_step_cpu_ratio")
            rows.append(
                f"| {_backend_name(entry)} | {model} | "
                f"{part['hook_step_ratio']:.3f}"
                + ("" if cpu is None else f" / {cpu:.3f}") + " | "
                f"{part['plain_step_seconds'] * 1000:.1f} | "
                f"{part['epoch_end_seconds'] * 1000:.1f} | "
                f"{part['epoch_seconds']:.2f} | "
                f"{part['estimated_default_ratio']:.3f} |")
    if not rows:
        return []
    return ["The default's two costs measured apart (steadier than "
            "whole-fit ratios on a shared machine): the compiled train "
            "step with / without the capture, alternating over the same "
            "batches (wall, and on JAX / CPU), and the callback's epoch-end "
            "work (on JAX timed in the rounds above).", "",
            "| backend | model | capture: step time ratio | plain step (ms) "
            "| epoch end (ms) | epoch (s) | estimated default ratio |",
            "|---|---|---|---|---|---|---|"] + rows + [""]


def _windows(backends):
    rows, first, rounds = [], None, None
    for backend, entry in backends.items():
        for model, result in entry["models"].items():
            window = result.get("window")
            if not window:
                continue
            first, rounds = first or window, rounds or entry["rounds"]
            rows.append(
                f"| {_backend_name(entry)} | {model} | {window['window']} | "
                f"{window['median_ratio']:.3f} | "
                f"{window['median_cpu_ratio']:.3f} | "
                f"{window['median_seconds_per_window']['plain']:.2f} | "
                f"{window['median_window_end_seconds'] * 1000:.1f} |")
    if not rows:
        return []
    return [f"Windows of {first['window']} optimizer steps "
            f"(`gradient_window={first['window']}`, default "
            "statistics): time of optimizer steps "
            f"{first['steps'][0]} to {first['steps'][1]} "
            f"({first['spans']} whole windows, each window end "
            "included; the first window, which traces, left out) "
            "over the time of the same steps with plain "
            "`keras.callbacks.TensorBoard`, median over "
            f"{rounds} paired, alternating rounds. Goal: at most 1.03.", "",
            "| backend | model | window (steps) | wall | CPU | plain time per "
            "window (s) | window end (ms) |",
            "|---|---|---|---|---|---|---|"] + rows + [""]


def _optional(result, key, spec):
    """A figure older result files lack, as text ("–" when absent)."""
    value = result.get(key)
    return "–" if value is None else format(value, spec)


def _scale_rows(data, compiles=False):
    """The per-model rows of a scale.py result (with the XLA compile
    seconds of the epochs after the first, on JAX)."""
    rows = []
    for model, result in data.get("models", {}).items():
        row = (
            f"| {model} | {result['params'] / 1e6:.1f} M | "
            f"{result['epoch_end_seconds'] * 1000:.0f} ms | "
            f"{result['epoch_end_ns_per_param']:.2f} | "
            f"{result['first_epoch_extra_seconds']:.2f} | "
            f"{result['peak_memory_overhead_bytes_per_param']:.1f} | "
            f"{result['state_bytes_per_param']:.1f} | "
            f"{result['steady_epoch_ratio']:.3f} | "
            f"{_optional(result, 'state_save_ns_per_param', '.2f')} | "
            f"{_optional(result, 'state_file_bytes_per_param', '.1f')} | "
            f"{_optional(result, 'state_write_ns_per_param', '.2f')} | "
            f"{_optional(result, 'step_ns_per_param', '.2f')} | "
            f"{_optional(result, 'host_bytes_per_window', '.0f')} |")
        if compiles:
            first = _first_epoch_compiles(result)
            row += (f" {first['plain']:.1f} / {first['gradients']:.1f} |"
                    if first else " – |")
            seconds = result.get("steady_compile_seconds")
            row += (f" {seconds['plain']:.1f} / {seconds['gradients']:.1f} |"
                    if seconds else " – |")
        rows.append(row)
    return rows


def _first_epoch_compiles(result):
    """XLA compile seconds of the first epoch, median over the rounds, per
    configuration (None for runs that did not record them)."""
    runs = result.get("runs", [])
    if not runs or any("epoch_compile_seconds" not in run[config]
                       for run in runs for config in run):
        return None
    return {config: statistics.median(run[config]["epoch_compile_seconds"][0]
                                      for run in runs)
            for config in ("plain", "gradients")}


SCALE_HEADER = ("| model | parameters | epoch end | ns/param | first epoch "
                "extra (s) | peak memory (bytes/param) | state (bytes/param) "
                "| steady epoch ratio | state save (ns/param) | state file "
                "(bytes/param) | state write, background (ns/param) | train "
                "step, extra (ns/param/step) | host bytes per window |")
SCALE_RULE = "|---|---|---|---|---|---|---|---|---|---|---|---|---|"


FIT_LOOP_PATTERN_NAMES = {
    "from_zero_new": "each fit from epoch 0, a new callback per fit",
    "from_zero_reused": "each fit from epoch 0, one callback reused",
    "continuing_new": "each fit continuing with `initial_epoch`, a new "
                      "callback per fit",
    "continuing_reused": "each fit continuing with `initial_epoch`, one "
                         "callback reused",
}


def _fit_loop_lines(data):
    loop = data.get("fit_loop")
    if not loop:
        return []
    patterns = loop.get("patterns")
    if not patterns:  # an earlier run: one pattern
        return ["", f"`fit(epochs=1)` {loop['fits']} times in a loop on the "
                f"seed CNN, total time with the callback / with plain "
                f"TensorBoard, median of {len(loop['ratios'])} alternating "
                f"rounds: **{loop['ratio']:.3f}×** (goal at most 1.03×)."]
    lines = ["", f"`fit(epochs=1)` {loop['fits']} times in a loop on the "
             f"seed CNN, total time with the callback / with plain "
             f"TensorBoard, median of {len(loop['ratios'])} alternating "
             f"rounds (goal at most 1.03× in each pattern):", ""]
    lines += [f"- {FIT_LOOP_PATTERN_NAMES.get(name, name)}: "
              f"**{pattern['ratio']:.3f}×**"
              for name, pattern in patterns.items()]
    return lines


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
             "file bytes per parameter); the callback submits it at the "
             "epoch end and a thread writes it while the next epoch trains "
             "(state write: that thread's time, competing with training for "
             "the cores). The stack models end a window every 10 steps "
             "(ten per epoch): their epoch end is one window's. "
             "Goals: epoch end at most 5 "
             "ns/param, first epoch at most 1 s at ResNet50 size, peak "
             "memory at most 12 bytes/param.", "",
             SCALE_HEADER, SCALE_RULE]
    lines += _scale_rows(data) + _per_variable_lines(data)
    lines += _fit_loop_lines(data)
    lines += ["", f"Machine: {machine_line(data.get('machine'))}", ""]
    return lines


def _per_variable_lines(data):
    """The window end per variable of the many-variable models, and a
    non-finite window against a finite one (goals of at most 50 µs per
    variable and 2x)."""
    models = data.get("models", {})
    lines = []
    for name, result in models.items():
        if not name.startswith("stack") or not result.get("variables"):
            continue
        lines.append(
            f"{name}: {result['variables']} variables, window end "
            f"{result['epoch_end_seconds'] / result['variables'] * 1e6:.0f}"
            f" µs per variable (goal at most 50).")
    finite, nonfinite = models.get("stack2000"), models.get(
        "stack2000_nonfinite")
    if finite and nonfinite:
        lines.append(
            f"A non-finite window against a finite one (stack2000): "
            f"**{nonfinite['epoch_end_seconds'] / finite['epoch_end_seconds']:.2f}×**"
            f" (goal at most 2×).")
    return [""] + lines if lines else []


def _scale_commands(data):
    """Each figure's command (a run keeps the models it did not measure
    from an earlier one, with their own command and code)."""
    default = data.get("command", "python bench/scale.py")
    code = data.get("versions", {}).get("code")
    parts = {}
    for name, entry in list(data.get("models", {}).items()) + [
            ("fit loop", data.get("fit_loop") or {})]:
        if name != "fit loop" or data.get("fit_loop"):
            key = (entry.get("command", default), entry.get("code", code))
            parts.setdefault(key, []).append(name)
    return "; ".join(
        f"{', '.join(names)}: `{command}`" + (f" (code {c})" if c else "")
        for (command, c), names in parts.items())


def scale_jax_section(data):
    versions = data.get("versions", {})
    lines = ["## Cost at scale, JAX backend", "",
             f"{_scale_commands(data)}; JAX {versions.get('jax', '?')}. "
             "The figures of the "
             "section above with `KERAS_BACKEND=jax` in every process, "
             "against plain `keras.callbacks.TensorBoard` on JAX. State: "
             "the bytes of the capture's accumulators and of the window "
             "ends' accumulated state (JAX arrays: the window end runs in "
             "jitted JAX, `window/kernels/jax.py`). Train step, extra: the "
             "steady epoch's time less its window end, against plain's, "
             "per step and parameter (the floor, one read of g and one "
             "read-modify-write of the window sum, is about 0.39 ns here). "
             "Host bytes: what the window-end kernel copies to the host per "
             "window. Also the XLA compile seconds of the first epoch (the "
             "capture's train step and the window ends' programs, compiled "
             "in a background thread from the start of training) and of "
             "the epochs after it, per fit.", "",
             SCALE_HEADER + " XLA compile s, first epoch (plain / "
             "callback) | after the first epoch |",
             SCALE_RULE + "---|---|"]
    lines += _scale_rows(data, compiles=True) + _per_variable_lines(data)
    lines += _fit_loop_lines(data)
    lines += ["", f"Machine: {machine_line(data.get('machine'))}", ""]
    return lines


def scale_torch_section(data):
    lines = ["## Cost at scale, PyTorch backend", "",
             f"{_scale_commands(data)}. The figures of the first scale "
             "section with `KERAS_BACKEND=torch` in every process, against "
             "plain `keras.callbacks.TensorBoard` on PyTorch; the window end "
             "runs in torch ops (`window/kernels/torch.py`). State: the "
             "capture's tensors and the window ends' state. Train step and "
             "host bytes as in the JAX section.", "",
             SCALE_HEADER, SCALE_RULE]
    lines += _scale_rows(data) + _fit_loop_lines(data)
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


def deep_render_sentence(deep):
    """The deep-model render figures next to their goals."""
    return ("A deep model: `python bench/render_time.py "
            f"{deep['logdir']}` ({deep['runs']} runs of the demo's 24-block "
            f"transformer, 389 variables x {deep['max_epochs']} windows, made "
            "by `bench/deep_logdir.py`): iframe -> rendered median "
            f"**{deep['iframe_to_render_ms']['median']:.0f} ms** (goal at most "
            "300 ms warm), first sample with cold caches "
            f"{deep['first_sample_render_ms']:.0f} ms from navigation (goal: "
            "the tab's part at most 1 s cold); the gradient map drawn at "
            f"{deep['view_drawn_ms'].get('gradient-map', 0):.0f} ms from the "
            "iframe's creation.")


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
        deep = load("render_time_deep")
        if deep:
            lines.insert(-3, "")
            lines.insert(-3, deep_render_sentence(deep))
        for entry in (data, long_run, deep):
            if not entry:
                continue
            lines.append(
                f"| {entry['logdir']} | "
                f"{entry['first_render_ms']['median']:.0f} | "
                f"{entry['iframe_to_render_ms']['median']:.0f} | "
                f"{entry['first_sample_render_ms']:.0f} |")
    return lines + ["", f"Machine: {machine_line(data.get('machine'))}", ""]


def jax_step_section(data):
    lines = ["## Where the JAX capture's time goes", "",
             f"`{data.get('command', 'python bench/jax_step.py')}` (JAX "
             f"{data.get('versions', {}).get('jax', '?')}, code "
             f"{data.get('versions', {}).get('code', '?')}): the default's "
             "cost on JAX in parts measured apart. Train-step compiles: XLA "
             "compilations of the train step in each epoch of a 3-epoch "
             "`fit` of 4 batches per epoch. Compiled step: XLA's cost "
             "analysis of the capture's train step over Keras's (flops, "
             "bytes accessed), and the bytes of arguments its donation "
             "aliases to outputs. Additions alone: the capture's per-step "
             "work (`_add_step`) jitted by itself on gradients of the "
             "model's shapes, and its share of a plain step. Per step: "
             "plain and capture's train step alternating over the same "
             "batches.", "",
             "| model | train-step compiles per epoch, plain | callback | "
             "trace + compile (s), plain / callback | flops ratio | bytes "
             "accessed ratio | aliased / accumulator MB | additions "
             "(ms/step) | of which Σg += g (ms) | additions ÷ plain step | "
             "step ratio (wall / CPU) | plain step (ms) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, result in data.get("models", {}).items():
        compiles = result["compiles"]
        counts = {name: ", ".join(str(e["train_step_compiles"])
                                  for e in compiles[name]["epochs"])
                  for name in ("plain", "default")}
        compiled, adds, steps = (result["compiled"], result["additions"],
                                 result["steps"])
        aliased = compiled["hooked"]["memory"]["alias_size_in_bytes"]
        seconds = [compiled[k].get("compile_seconds")
                   for k in ("plain", "hooked")]
        lines.append(
            f"| {model} | {counts['plain']} | {counts['default']} | "
            + ("–" if None in seconds else
               f"{seconds[0]:.1f} / {seconds[1]:.1f}") + " | "
            f"{compiled['flops_ratio']:.4f} | "
            f"{compiled['bytes_accessed_ratio']:.4f} | "
            f"{aliased / 1e6:.1f} / {compiled['accumulator_bytes'] / 1e6:.1f}"
            f" | {adds['add_step_seconds'] * 1000:.3f} | "
            f"{adds['sums_only_seconds'] * 1000:.3f} | "
            f"{adds['share_of_plain_step'] * 100:.2f} % | "
            f"{steps['hook_step_ratio']:.3f} / "
            f"{steps['hook_step_cpu_ratio']:.3f} | "
            f"{steps['plain_step_seconds'] * 1000:.1f} |")
    parts = {model: result["breakdown"]
             for model, result in data.get("models", {}).items()
             if "breakdown" in result}
    if parts:
        names = list(next(iter(parts.values()))["seconds"])
        lines += ["", "The additions' per-variable figures, each way jitted "
                  "alone on gradients of the model's shapes (ms per step; "
                  "inside the train step XLA fuses them with the backward "
                  "pass, so these times need not add up to the step's).", "",
                  "| model | " + " | ".join(
                      name.replace("|", "\\|") for name in names) + " |",
                  "|---|" + "---|" * len(names)]
        for model, part in parts.items():
            lines.append(f"| {model} | " + " | ".join(
                f"{part['seconds'][name] * 1000:.2f}" for name in names)
                + " |")
    lines += ["", f"Machine: {machine_line(data.get('machine'))}", ""]
    return lines


SECTIONS = [("overhead", overhead_section), ("scale", scale_section),
            ("scale_jax", scale_jax_section),
            ("scale_torch", scale_torch_section),
            ("jax_step", jax_step_section),
            ("accumulation_error", accumulation_section),
            ("storage", storage_section),
            ("plugin_latency", latency_section),
            ("render_time", render_section)]

PREAMBLE = ["# Benchmark results", "",
            "Written by `bench/run_all.py` from the JSON files each "
            "benchmark writes under bench/out/. Every figure is a ratio "
            "against a baseline measured in the same run, or a median / "
            "percentile of repeated measurements; shared machines are "
            "noisy, so compare only figures from the same machine.", ""]


def render(name):
    data = load(name)
    renderer = dict(SECTIONS)[name]
    return [f"## {name}", "", "not measured", ""] if data is None else (
        renderer(data))


def _blocks(text):
    """The file as [(heading, lines)], split at its "## " headings (the
    preamble's heading is None)."""
    blocks = [(None, [])]
    for line in text.split("\n"):
        if line.startswith("## "):
            blocks.append((line, []))
        blocks[-1][1].append(line)
    return blocks


def report(only=None):
    """Writes RESULTS.md from every section's JSON file; with ``only``
    (section names), re-renders those sections alone and keeps the rest of
    the file as it is (a section not yet in it goes after the section
    before it in `SECTIONS`)."""
    if only is None or not os.path.exists(RESULTS):
        lines = list(PREAMBLE)
        for name, _ in SECTIONS:
            lines += render(name)
        text = "\n".join(lines)
    else:
        unknown = set(only) - set(dict(SECTIONS))
        if unknown:
            raise SystemExit(f"unknown sections {sorted(unknown)}; the "
                             f"sections are {[n for n, _ in SECTIONS]}")
        with open(RESULTS) as f:
            blocks = _blocks(f.read())
        after = None
        for name, _ in SECTIONS:
            heading = render(name)[0]
            found = [i for i, (h, _) in enumerate(blocks) if h == heading]
            if name in only:
                lines = render(name)
                if found:
                    blocks[found[0]] = (heading, lines)
                else:
                    position = len(blocks) if after is None else after + 1
                    blocks.insert(position, (heading, lines))
                    found = [position]
            if found:
                after = found[0]
        text = "\n".join(line for _, lines in blocks for line in lines)
    with open(RESULTS, "w") as f:
        f.write(text)
    print(f"wrote {RESULTS}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--sections", default=None,
                        help="with --report-only: re-render only these "
                        "sections (comma-separated: "
                        + ", ".join(n for n, _ in SECTIONS)
                        + ") and keep the rest of RESULTS.md")
    args = parser.parse_args()
    if not args.report_only:
        run(args.quick)
    report(args.sections.split(",") if args.sections else None)


if __name__ == "__main__":
    main()
