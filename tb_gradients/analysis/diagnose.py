"""``python -m tb_gradients.diagnose LOGDIR [--json]``: the findings of
every run under a log directory, for scripts and CI.

Reads the event files directly (`reader`, no TensorBoard server) and
evaluates the rules of `findings` (docs/FINDINGS.md) on what each run has
that can be read: a damaged or foreign run is listed with its read errors
and never hides the others. Exit status: 0 when no run has a finding of
severity ``warning`` or ``error`` and everything was read, 1 when a run
has such a finding, 3 when none has but something could not be read, 2 on
bad usage or a log directory that cannot be read at all.

With ``--json`` it prints exactly one strict JSON document::

    {"runs": [{"run": "<run path relative to LOGDIR>",
               "findings": [{"kind", "severity", "variable", "layer",
                             "epoch", "step", "message", "evidence"}],
               "errors": [{"run", "tag", "step", "reason", "message",
                           "more"}]}]}
"""

import argparse
import json
import sys

from tb_gradients.analysis import findings
from tb_gradients.analysis import reader
from tb_gradients.format import decoding

EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE, EXIT_READ_ERRORS = 0, 1, 2, 3


def diagnose(logdir):
    """``[(run name, [Finding], [ReadError])]`` of every run with gradient
    data or read errors (`reader.Run.errors`), sorted by name.

    Raises:
      ValueError: ``logdir`` is not a readable directory.
    """
    return [(name, findings.evaluate(run.sources), run.errors)
            for name, run in sorted(reader.load_runs(logdir).items())]


def has_problems(results):
    return any(findings.severity_rank(f.severity)
               >= findings.severity_rank("warning")
               for _, found, _ in results for f in found)


def has_read_errors(results):
    return any(errors for _, _, errors in results)


def exit_status(results):
    """`EXIT_FINDINGS` over `EXIT_READ_ERRORS` over `EXIT_CLEAN`: a
    finding is about training, a read error about the logs."""
    if has_problems(results):
        return EXIT_FINDINGS
    return EXIT_READ_ERRORS if has_read_errors(results) else EXIT_CLEAN


def to_json(results):
    return json.dumps(
        {"runs": [{"run": name, "findings": [f.to_json() for f in found],
                   "errors": decoding.errors_json(errors)}
                  for name, found, errors in results]},
        allow_nan=False, sort_keys=False)


def _where(finding):
    parts = []
    if finding.epoch is not None:
        parts.append(f"epoch {finding.epoch}")
    if finding.step is not None:
        parts.append(f"step {finding.step}")
    return ", ".join(parts) or f"at {finding.at}"


def to_text(results):
    lines = []
    for name, found, errors in results:
        if not found and not errors:
            lines.append(f"{name}: no findings")
            continue
        lines.append(f"{name}:" if found else f"{name}: no findings in "
                     "what could be read")
        for error, more in decoding.grouped(errors):
            also = (f" (and {more} more for the same reason)" if more
                    else "")
            where = ", ".join(part for part in (
                error.tag and f"tag {error.tag}",
                error.step is not None and f"step {error.step}") if part)
            lines.append(f"  {'UNREAD':8s}{where or 'run'}{also}")
            lines.append(f"      {error.reason}")
        for finding in found:
            subject = finding.variable or finding.layer or "model"
            lines.append(f"  {finding.severity.upper():8s}{finding.kind:14s}"
                         f"{subject} ({finding.source}, {_where(finding)})")
            lines.append(f"      {finding.message}")
    flagged = sum(1 for _, found, _ in results if any(
        findings.severity_rank(f.severity) >= 1 for f in found))
    unread = sum(1 for _, _, errors in results if errors)
    lines.append(f"{len(results)} run(s), {flagged} with warnings or errors"
                 + (f", {unread} read with errors" if unread else ""))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tb_gradients.diagnose",
        description="Findings of every run under a log directory "
                    "(docs/FINDINGS.md). Exit status 0: no warnings or "
                    "errors; 1: some; 3: none, but some data could not be "
                    "read (damaged or from a newer version); 2: bad usage "
                    "or unreadable directory.")
    parser.add_argument("logdir", help="a log directory, as given to "
                        "TensorBoard's --logdir")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document instead of text")
    args = parser.parse_args(argv)
    try:
        results = diagnose(args.logdir)
    except (ValueError, OSError) as error:
        print(f"diagnose: cannot read the log directory: {error}",
              file=sys.stderr)
        return EXIT_USAGE
    print(to_json(results) if args.json else to_text(results))
    return exit_status(results)


if __name__ == "__main__":
    sys.exit(main())
