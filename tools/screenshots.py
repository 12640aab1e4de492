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

Usage:
  python tools/screenshots.py [--logdir runs] [--runs A,B,C]
                              [--heatmap-runs A] [--out docs/images]

The default logdir is the demo's (``make demo-train``); the default runs
are the vanishing-gradient experiment's when present, else the first three.
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


def default_runs(names):
    preferred = [name for name in ("vanishing_sigmoid/train", "vanishing_tanh/train",
                                   "vanishing_relu/train") if name in names]
    return preferred or names[:3]


def shoot_views(page, frame, out, views, suffix=""):
    # TensorBoard sizes the plugin's iframe to its window: a window as tall
    # as the tab's content lets every section be shot whole.
    height = frame.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": WIDTH, "height": min(height + 120, 16000)})
    written = []
    for view in views:
        section = frame.locator(f"#view-{view}")
        section.scroll_into_view_if_needed()
        path = os.path.join(out, f"{view}{suffix}.png")
        section.screenshot(path=path)
        written.append(path)
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default=os.path.join(ROOT, "runs"))
    parser.add_argument("--runs", help="comma-separated runs to compare")
    parser.add_argument("--heatmap-runs",
                        help="comma-separated runs of the heatmap shots "
                        "(default: the first of --runs)")
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
        unknown = sorted(set(runs + heatmap_runs) - set(names))
        if unknown:
            sys.exit(f"Unknown runs {unknown}; the logdir has {names}")
        with sync_playwright() as playwright:
            browser = harness.launch_chromium(playwright)
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            frame = harness.open_gradients_tab(page, base, TIMEOUT_MS)
            harness.select_runs(frame, runs, TIMEOUT_MS)
            written = [os.path.join(args.out, "overview.png")]
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
            browser.close()
    if errors:
        sys.exit(f"Page errors while taking screenshots: {errors}")
    for path in written:
        print(os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
