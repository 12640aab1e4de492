"""``python -m tb_gradients.diagnose LOGDIR [--json]``: the findings of
every run under a log directory, for scripts and CI.

Reads the event files directly (`reader`, no TensorBoard server) and
evaluates the rules of `findings` (docs/FINDINGS.md). Exit status: 0 when
no run has a finding of severity ``warning`` or ``error``, 1 when one has,
2 on bad usage or a log directory that cannot be read.

With ``--json`` it prints exactly one strict JSON document::

    {"runs": [{"run": "<run path relative to LOGDIR>",
               "findings": [{"kind", "severity", "variable", "layer",
                             "epoch", "step", "message", "evidence"}]}]}
"""

import argparse
import json
import sys

from tb_gradients.analysis import findings
from tb_gradients.analysis import reader

EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def diagnose(logdir):
    """``[(run name, [Finding])]`` of every run with gradient data, sorted
    by name.

    Raises:
      ValueError: ``logdir`` is not a readable directory.
    """
    return [(name, findings.evaluate(run.sources))
            for name, run in sorted(reader.load_runs(logdir).items())]


def has_problems(results):
    return any(findings.severity_rank(f.severity)
               >= findings.severity_rank("warning")
               for _, found in results for f in found)


def to_json(results):
    return json.dumps(
        {"runs": [{"run": name, "findings": [f.to_json() for f in found]}
                  for name, found in results]},
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
    for name, found in results:
        if not found:
            lines.append(f"{name}: no findings")
            continue
        lines.append(f"{name}:")
        for finding in found:
            subject = finding.variable or finding.layer or "model"
            lines.append(f"  {finding.severity.upper():8s}{finding.kind:14s}"
                         f"{subject} ({finding.source}, {_where(finding)})")
            lines.append(f"      {finding.message}")
    flagged = sum(1 for _, found in results if any(
        findings.severity_rank(f.severity) >= 1 for f in found))
    lines.append(f"{len(results)} run(s), {flagged} with warnings or errors")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tb_gradients.diagnose",
        description="Findings of every run under a log directory "
                    "(docs/FINDINGS.md). Exit status 0: no warnings or "
                    "errors; 1: some; 2: bad usage or unreadable directory.")
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
    return EXIT_FINDINGS if has_problems(results) else EXIT_CLEAN


if __name__ == "__main__":
    sys.exit(main())
