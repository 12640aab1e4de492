"""Time to first complete render of the Gradients tab in headless Chromium.

A real TensorBoard serves the logdir; each sample opens TensorBoard's page
on ``#gradients`` in a fresh browser context (empty HTTP cache) and measures
from the top page's navigation start to the frontend's
``gradients-rendered`` performance mark (every view drawn, for the run
selected by default). A second figure: from ticking "all" runs to the
redraw of every view for all of them (data fetched, not cached).

Usage: python bench/render_time.py [LOGDIR] [--samples N] [--load-fast]
[--output FILE]
Default LOGDIR: bench/out/latency_logdir (made by bench/plugin_latency.py).
A long run (2,000 windows x 60 variables): bench/render_logdir.py makes
bench/out/render_logdir; bench/run_all.py measures it into
bench/out/render_time_long.json. Also reported: when each view had drawn (the
frontend's ``gradients-view-<id>`` marks, from the iframe's creation), and
the first sample alone (the plugin's caches cold).
Writes bench/out/render_time.json (or FILE).
"""

import argparse
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import machine  # noqa: E402
from tests import browser_harness as harness  # noqa: E402

DEFAULT_LOGDIR = os.path.join(ROOT, "bench", "out", "latency_logdir")
OUTPUT = os.path.join(ROOT, "bench", "out", "render_time.json")
TIMEOUT_MS = 120000

# Milliseconds from the top page's navigation start to the first
# `gradients-rendered` mark of the plugin's iframe (both clocks are offsets
# from their document's timeOrigin, so compare absolute times).
RENDER_MS_JS = """
([frameOrigin, mark]) => frameOrigin + mark - performance.timeOrigin
"""
FRAME_MARK_JS = """
() => [performance.timeOrigin,
       performance.getEntriesByName('gradients-rendered')[0].startTime]
"""
VIEW_MARKS_JS = """
() => Object.fromEntries(performance.getEntriesByType('mark')
  .filter((mark) => mark.name.startsWith('gradients-view-'))
  .map((mark) => [mark.name.slice('gradients-view-'.length), mark.startTime]))
"""
SELECT_ALL_JS = """
() => new Promise((resolve) => {
  const start = performance.now();
  const boxes = [...document.querySelectorAll('#run-picker input[type=checkbox]')];
  document.body.addEventListener('gradients-rendered', () => {
    if (document.querySelectorAll('#view-norms .panel').length === boxes.length) {
      resolve(performance.now() - start);
    }
  });
  document.querySelector('[data-control=select-all-runs]').click();
})
"""


def sample(browser, base):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        frame = harness.open_gradients_tab(page, base, TIMEOUT_MS)
        frame_origin, mark = frame.evaluate(FRAME_MARK_JS)
        first_ms = page.evaluate(RENDER_MS_JS, [frame_origin, mark])
        canvases = frame.evaluate("document.querySelectorAll('canvas').length")
        views = frame.evaluate(VIEW_MARKS_JS)
        all_runs_ms = frame.evaluate(SELECT_ALL_JS)
        # `mark` alone: from the iframe's creation (TensorBoard's own page
        # loaded) to every view drawn, the part this plugin is responsible for.
        return first_ms, all_runs_ms, canvases, mark, views
    finally:
        context.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logdir", nargs="?", default=DEFAULT_LOGDIR)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--load-fast", action="store_true",
                        help="use TensorBoard's Rust data server")
    parser.add_argument("--output", default=OUTPUT,
                        help="the JSON file to write (default: %(default)s)")
    args = parser.parse_args()
    if not os.path.isdir(args.logdir):
        sys.exit(f"No logdir {args.logdir!r}: run bench/plugin_latency.py first "
                 "or pass a logdir")
    if not os.path.exists(harness.CHROMIUM):
        sys.exit(harness.chromium_missing_message())

    from playwright.sync_api import sync_playwright

    with harness.tensorboard(args.logdir, load_fast=args.load_fast) as base:
        runs = harness.wait_for_settled_runs(base)
        with sync_playwright() as playwright:
            browser = harness.launch_chromium(playwright)
            try:
                samples = [sample(browser, base) for _ in range(args.samples)]
            finally:
                browser.close()

    first = [s[0] for s in samples]
    all_runs = [s[1] for s in samples]
    in_frame = [s[3] for s in samples]
    result = {
        "benchmark": "render_time",
        "what": ("navigation start of TensorBoard's page on #gradients -> "
                 "every view of the Gradients tab drawn (default run); the same "
                 "from the plugin iframe's creation; and ticking all runs -> every view redrawn for all of them"),
        "logdir": os.path.relpath(os.path.abspath(args.logdir), ROOT)
        if os.path.abspath(args.logdir).startswith(ROOT) else args.logdir,
        "runs": len(runs),
        "max_epochs": max((info["epochs"] for info in runs), default=0),
        "load_fast": args.load_fast,
        "samples": args.samples,
        "canvases_first_render": samples[0][2],
        "first_render_ms": {"median": statistics.median(first),
                            "min": min(first), "max": max(first),
                            "all": first},
        "iframe_to_render_ms": {"median": statistics.median(in_frame),
                                 "min": min(in_frame), "max": max(in_frame),
                                 "all": in_frame},
        "first_sample_render_ms": first[0],
        "view_drawn_ms": {view: statistics.median(s[4].get(view, 0) for s in samples)
                          for view in samples[0][4]},
        "all_runs_render_ms": {"median": statistics.median(all_runs),
                               "min": min(all_runs), "max": max(all_runs),
                               "all": all_runs},
        "machine": machine.describe(),
    }
    output = os.path.abspath(args.output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w") as f:
        json.dump(result, f, indent=2)
    print(f"first complete render: median {result['first_render_ms']['median']:.0f} ms "
          f"over {args.samples} samples ({len(runs)} runs, "
          f"{result['max_epochs']} epochs), of which iframe -> rendered "
          f"{result['iframe_to_render_ms']['median']:.0f} ms; all runs: median "
          f"{result['all_runs_render_ms']['median']:.0f} ms; first sample "
          f"(cold caches) {first[0]:.0f} ms")
    print("views drawn (median ms from the iframe's creation): " + ", ".join(
        f"{view} {ms:.0f}" for view, ms in sorted(
            result["view_drawn_ms"].items(), key=lambda item: item[1])))
    print(f"wrote {os.path.relpath(output, ROOT)}")


if __name__ == "__main__":
    main()
