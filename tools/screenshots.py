"""Screenshots of the Gradients tab for the README.

Serves a logdir with a real TensorBoard, opens its page on ``#gradients`` in
headless Chromium, selects runs and writes one PNG per view to docs/images/:

  overview.png             toolbar and the first view, as a user lands
  norms.png                gradient norms (the seed's "Gradient Norm")
  highest.png              highest gradient elements
  layer-stats.png          mean / std / max_abs / l2 per variable
  flow.png                 gradient flow at the last epoch
  steps.png                per-step l2 and log10 max_abs
  heatmap.png              heatmaps at the last epoch
  heatmap-first-epoch.png  the same at the first epoch
  recurrent-norm.png       recurrent layers: gradient norm per timestep
  recurrent-heatmap.png    recurrent layers: channels x timesteps (mean |g|,
                           log colours)
  recurrent-gates.png      recurrent layers: per-gate weight gradients
  deep-gradient-map.png    a deep model (the demo's 24-block transformer):
                           every variable over every window
  deep-flow.png            the same model's depth profiles

Usage:
  python tools/screenshots.py [--logdir runs] [--runs A,B,C]
                              [--heatmap-runs A] [--recurrent-runs A,B,C]
                              [--deep-run A] [--only views|recurrent|deep]
                              [--out docs/images]

The default logdir is the demo's (``make demo-train``); the default runs
are the vanishing-gradient experiment's when present, else the first three;
the default recurrent runs are the demo's LSTM, GRU and SimpleRNN runs.
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests import browser_harness as harness  # noqa: E402

VIEWS = ("norms", "highest", "layer-stats", "flow", "steps", "heatmap")
WIDTH = 1400
TIMEOUT_MS = 120000


DEEP_RUN = "deep_transformer/train"
DEEP_VIEWS = ("gradient-map", "flow")
RECURRENT_BLOCKS = ("norm", "heatmap", "gates")
RECURRENT_RUNS = ("recurrent_lstm/train", "recurrent_gru/train",
                  "recurrent_simple_rnn/train")


def default_runs(names):
    preferred = [name for name in ("vanishing_sigmoid/train", "vanishing_tanh/train",
                                   "vanishing_relu/train") if name in names]
    return preferred or names[:3]


def fit_viewport(page, frame):
    # TensorBoard sizes the plugin's iframe to its window: a window as tall
    # as the tab's content lets every section be shot whole.
    height = frame.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": WIDTH, "height": min(height + 300, 16000)})


def shoot_sections(page, frame, sections):
    """Screenshots of ``{element id: PNG path}``, after fitting the window."""
    fit_viewport(page, frame)
    for element_id, path in sections.items():
        section = frame.locator(f"#{element_id}")
        section.scroll_into_view_if_needed()
        section.screenshot(path=path)
    return list(sections.values())


def shoot_views(page, frame, out, views, suffix=""):
    return shoot_sections(page, frame, {
        f"view-{view}": os.path.join(out, f"{view}{suffix}.png")
        for view in views})


def shoot_recurrent(page, frame, out, runs):
    """The recurrent section's blocks for `runs`: the first layer (the
    demo's `sequence`, returning sequences), mean |g| over the samples on a
    log colour scale, with the gate heatmaps at the last epoch."""
    harness.select_runs(frame, runs, TIMEOUT_MS)
    frame.locator("[data-control=recurrent-log-color]").check()
    frame.locator("[data-control=gate-heatmaps]").check()
    frame.wait_for_function(
        "() => document.querySelectorAll('#recurrent-gates canvas[data-view=gate-heatmap]').length > 0",
        timeout=TIMEOUT_MS)
    return shoot_sections(page, frame, {
        f"recurrent-{block}": os.path.join(out, f"recurrent-{block}.png")
        for block in RECURRENT_BLOCKS})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default=os.path.join(ROOT, "runs"))
    parser.add_argument("--runs", help="comma-separated runs to compare")
    parser.add_argument("--heatmap-runs",
                        help="comma-separated runs of the heatmap shots "
                        "(default: the first of --runs)")
    parser.add_argument("--recurrent-runs",
                        help="comma-separated runs of the recurrent shots "
                        "(default: the demo's recurrent_lstm, recurrent_gru and "
                        "recurrent_simple_rnn runs)")
    parser.add_argument("--deep-run", default=DEEP_RUN,
                        help="the run of the deep-model shots (default: the demo's "
                        "24-block transformer)")
    parser.add_argument("--only", choices=["views", "recurrent", "deep"],
                        help="take only the views' shots, the recurrent ones or the "
                        "deep model's")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "images"))
    args = parser.parse_args()
    if not os.path.isdir(args.logdir):
        sys.exit(f"No logdir {args.logdir!r}: train the demo runs first "
                 "(`make demo-train`) or pass --logdir")
    if not os.path.exists(harness.CHROMIUM):
        sys.exit(harness.chromium_missing_message())
    os.makedirs(args.out, exist_ok=True)

    from playwright.sync_api import sync_playwright

    with harness.tensorboard(args.logdir) as base:
        names = [info["run"] for info in harness.wait_for_settled_runs(base)]
        runs = args.runs.split(",") if args.runs else default_runs(names)
        heatmap_runs = args.heatmap_runs.split(",") if args.heatmap_runs else runs[:1]
        recurrent_runs = (args.recurrent_runs.split(",") if args.recurrent_runs
                          else [run for run in RECURRENT_RUNS if run in names])
        deep_runs = [args.deep_run] if args.deep_run in names else []
        if args.only == "recurrent":
            runs, heatmap_runs, deep_runs = [], [], []
        elif args.only == "views":
            recurrent_runs, deep_runs = [], []
        elif args.only == "deep":
            runs, heatmap_runs, recurrent_runs = [], [], []
            if not deep_runs:
                sys.exit(f"No run {args.deep_run!r}: train it with "
                         "`python -m demo.train --only deep` or pass --deep-run")
        unknown = sorted(set(runs + heatmap_runs + recurrent_runs) - set(names))
        if unknown:
            sys.exit(f"Unknown runs {unknown}; the logdir has {names}")
        with sync_playwright() as playwright:
            browser = harness.launch_chromium(playwright)
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            frame = harness.open_gradients_tab(page, base, TIMEOUT_MS)
            written = []
            if runs:
                harness.select_runs(frame, runs, TIMEOUT_MS)
                written.append(os.path.join(args.out, "overview.png"))
                page.screenshot(path=written[0])
                written += shoot_views(page, frame, args.out, VIEWS[:-1])

                harness.select_runs(frame, heatmap_runs, TIMEOUT_MS)
                written += shoot_views(page, frame, args.out, ["heatmap"])
                slider = frame.locator("#epoch-slider")
                before = frame.evaluate(harness.HEATMAP_DIGEST_JS)
                slider.focus()
                slider.press("Home")
                frame.wait_for_function(f"(before) => ({harness.HEATMAP_DIGEST_JS})() !== before",
                                        arg=before, timeout=TIMEOUT_MS)
                written += shoot_views(page, frame, args.out, ["heatmap"], "-first-epoch")
            if recurrent_runs:
                written += shoot_recurrent(page, frame, args.out, recurrent_runs)
            elif args.only == "recurrent":
                sys.exit("No recurrent runs in the logdir: train them with "
                         "`python -m demo.train --only recurrent` or pass --recurrent-runs")
            if deep_runs:
                harness.select_runs(frame, deep_runs, TIMEOUT_MS)
                written += shoot_sections(page, frame, {
                    f"view-{view}": os.path.join(args.out, f"deep-{view}.png")
                    for view in DEEP_VIEWS})
            browser.close()
    if errors:
        sys.exit(f"Page errors while taking screenshots: {errors}")
    for path in written:
        print(os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
