"""The run's findings as a Markdown table for TensorBoard's Text tab (the
callback writes it when new findings appear; docs/FINDINGS.md)."""

import numpy as np
from tensorboard.plugins.text import metadata as text_metadata

# The callback's findings (docs/FINDINGS.md), a Markdown table for
# TensorBoard's Text tab.
FINDINGS_TAG = "gradients/findings"


def write_findings(batch, findings_list, where):
    """The run's findings so far, most severe first.

    Args:
      findings_list: `analysis.findings.Finding`s.
      where: what the summary step is (``"epoch"`` or ``"step"``), for the
        heading.
    """
    rows = ["| severity | kind | layer | variable | epoch | step | message |",
            "|---|---|---|---|---|---|---|"]
    for finding in findings_list:
        cells = [finding.severity, finding.kind, finding.layer or "",
                 finding.variable or "",
                 "" if finding.epoch is None else str(finding.epoch),
                 "" if finding.step is None else str(finding.step),
                 finding.message]
        rows.append("| " + " | ".join(
            cell.replace("|", "\\|").replace("\n", " ") for cell in cells)
            + " |")
    text = (f"Gradient findings up to this {where} "
            "(docs/FINDINGS.md):\n\n" + "\n".join(rows))
    batch.tensor(FINDINGS_TAG,
                 np.array(text.encode("utf-8"), dtype=object),
                 text_metadata.create_summary_metadata(
                     display_name="Gradient findings",
                     description="What the gradients say is wrong, and "
                                 "where it started"))
