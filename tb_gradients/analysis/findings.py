"""Findings: what is wrong with a run's gradients, where it started.

One rules engine, pure functions from a run's recorded series
(`series.SourceSeries`) to `Finding`s, used by the callback while it trains,
by the plugin's ``/findings`` route and by ``python -m
tb_gradients.diagnose``. Each rule, its threshold and why are in
docs/FINDINGS.md; the thresholds are the module constants below.

The rules read only what the callback records anyway (docs/STATISTICS.md):
no extra pass over the data or the gradients.
"""

import dataclasses

import numpy as np

from tb_gradients import json_values
from tb_gradients.format import metadata

SEVERITIES = ("info", "warning", "error")
# The tab's views a finding links to (their ids in frontend/*.js).
VIEWS = ("norms", "layer-stats", "flow", "steps", "heatmap")
KINDS = ("nonfinite", "vanishing", "exploding", "dead_units",
         "cancellation")

# vanishing: the first kernel's gradient this many decades below the
# output kernel's, in at least VANISHING_RECORDS consecutive records;
# layers at least VANISHING_NAMED_DECADES below are named.
VANISHING_DECADES = 2.0
VANISHING_NAMED_DECADES = 1.0
VANISHING_RECORDS = 2
VANISHING_MIN_KERNELS = 3
# exploding: the per-step gradient norm this many decades above its
# minimum over the EXPLODING_LOOKBACK records before (error from
# EXPLODING_ERROR_DECADES, or when the gradient then turns non-finite)
EXPLODING_DECADES = 2.0
EXPLODING_ERROR_DECADES = 4.0
EXPLODING_LOOKBACK = 5
# exploding: one step's gradient norm this many times the window's median
EXPLODING_SPIKE_RATIO = 100.0
# dead units: this fraction of a layer's units with a zero gradient for a
# whole window, in the latest record and the one before
DEAD_UNITS_WARNING = 0.5
DEAD_UNITS_INFO = 0.25
DEAD_UNITS_RECORDS = 2
# cancellation: the dissolving norm this fraction of the accumulated norm
# for this many consecutive records
CANCELLATION_FRACTION = 0.9
CANCELLATION_RECORDS = 5
# nonfinite under a loss-scale optimizer: this fraction of a window's
# steps skipped, for this many consecutive records
SKIPPED_FRACTION = 0.5
SKIPPED_RECORDS = 3


@dataclasses.dataclass(frozen=True)
class Finding:
    """One thing the rules found in one source of one run.

    Attributes:
      kind: one of `KINDS`.
      severity: ``"info"``, ``"warning"`` or ``"error"``.
      variable: the variable it concerns (a name of the series), or None.
      layer: the layer it concerns, or None.
      epoch: the first epoch where it holds (epoch records), or None.
      step: the first 0-based optimizer step where it holds (the value of
        ``optimizer.iterations`` before that update), where known.
      message: one sentence: what it means and what users usually do.
      evidence: the figures compared (JSON-serialisable, finite or None).
      source: ``"training"`` or ``"probe"``.
      at: the summary step of the record that shows it (an epoch, or the
        end step of a window): where the tab opens the evidence.
      view: the id of the tab's view that shows the evidence (`VIEWS`).
    """

    kind: str
    severity: str
    variable: object
    layer: object
    epoch: object
    step: object
    message: str
    evidence: dict
    source: str
    at: int
    view: str

    @property
    def key(self):
        """What makes a finding new for the callback's reports."""
        return (self.source, self.kind, self.variable, self.layer)

    def to_json(self, extended=False):
        """The command's JSON object (``extended``: with ``source``, ``at``
        and ``view``, for the tab)."""
        body = {"kind": self.kind, "severity": self.severity,
                "variable": self.variable, "layer": self.layer,
                "epoch": self.epoch, "step": self.step,
                "message": self.message, "evidence": json_values.json_safe(self.evidence)}
        if extended:
            body.update(source=self.source, at=self.at, view=self.view)
        return body


def severity_rank(severity):
    return SEVERITIES.index(severity)


def sort_findings(findings):
    """Most severe first, then by where they start, then by kind."""
    return sorted(findings, key=lambda f: (
        -severity_rank(f.severity), f.at, KINDS.index(f.kind),
        str(f.layer or ""), str(f.variable or "")))


def evaluate(series_by_source):
    """Every finding of one run.

    Args:
      series_by_source: ``{source: series.SourceSeries}``.

    Returns:
      list of `Finding`, most severe first (`sort_findings`).
    """
    found = []
    for source in metadata.SOURCES:
        data = series_by_source.get(source)
        if data is None or not len(data.steps):
            continue
        for rule in RULES:
            found.extend(rule(data))
    return sort_findings(found)


# -- helpers -----------------------------------------------------------------


def _location(data, record, step=None):
    """``(epoch, step, at)`` of record ``record`` of ``data``."""
    at = int(data.steps[record])
    if data.per_epoch:
        return at, step, at
    if step is None:
        steps = data.stat("steps")[record]
        steps = steps[np.isfinite(steps)]
        step = at - int(steps.max()) if steps.size and data.source == (
            "training") else None
    return None, step, at


def _where(data, record):
    """'epoch 3' or 'the window ending at step 400', for messages."""
    at = int(data.steps[record])
    return f"epoch {at}" if data.per_epoch else (
        f"the window ending at step {at}")


def _kernels(data):
    """Indices of the weight matrices / kernels (2 or more axes)."""
    return [i for i, v in enumerate(data.variables) if len(v["shape"]) >= 2]


def _step_rms(data):
    """``(records, variables)`` RMS of the mean step gradient, ``‖G‖₂ /
    sqrt(size) / steps``: comparable across layers and window lengths."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return data.stat("l2") / np.sqrt(data.stat("size")) / data.stat(
            "steps")


def _first_run(mask, length):
    """First index where ``mask`` starts a run of ``length`` True values,
    or None."""
    count = 0
    for i, value in enumerate(mask):
        count = count + 1 if value else 0
        if count >= length:
            return i - length + 1
    return None


def _global_step_norm(data):
    """``(records,)`` per-step global gradient norm ``sqrt(Σ ‖G‖₂²) /
    steps``."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        l2 = data.stat("l2")
        steps = np.nanmax(np.where(np.isfinite(data.stat("steps")),
                                   data.stat("steps"), np.nan), axis=1)
        return np.sqrt(np.sum(np.square(l2), axis=1)) / steps


# -- rules -------------------------------------------------------------------


def nonfinite(data):
    """The first step and variable(s) whose applied gradient was not
    finite; and, under a loss-scale optimizer, steps that keep being
    skipped."""
    found = []
    first = data.stat("first_nonfinite_step")
    counts = data.stat("nan_count") + data.stat("inf_count")
    if np.isfinite(first).any():
        earliest = np.nanmin(first)
        culprits = [i for i in range(first.shape[1])
                    if (first[:, i] == earliest).any()]
        record = int(np.flatnonzero((first == earliest).any(axis=1))[0])
        later = int(np.isfinite(first[-1]).sum()) - len(culprits)
        variable = data.variables[culprits[0]]
        names = [data.variables[i]["name"] for i in culprits]
        epoch, step, at = _location(data, record, int(earliest))
        others = (f" (with {len(names) - 1} other variable(s) at the same "
                  "step)" if len(names) > 1 else "")
        found.append(Finding(
            "nonfinite", "error", variable["name"], variable["layer"],
            epoch, step,
            f"The gradient of {variable['name']}{others} first held NaN or "
            f"Inf at optimizer step {int(earliest)} ({_where(data, record)})"
            + (f", before {later} other variable(s)" if later > 0 else "")
            + "; look for an unsafe operation in layer "
            f"{variable['layer']} (log, sqrt or division near 0), a "
            "learning rate that is too high, or bad input values, and "
            "consider gradient clipping.",
            {"first_nonfinite_step": int(earliest), "variables": names,
             "variables_nonfinite_later": later,
             "nan_inf_count": counts[record, culprits[0]]},
            data.source, at, "layer-stats"))
    elif np.isfinite(counts).any() and (counts > 0).any():
        # the probe (or files without first_nonfinite_step): the first
        # record whose gradient held NaN or Inf
        record = int(np.flatnonzero((counts > 0).any(axis=1))[0])
        culprits = np.flatnonzero(counts[record] > 0)
        variable = data.variables[culprits[0]]
        epoch, _, at = _location(data, record)
        found.append(Finding(
            "nonfinite", "error", variable["name"], variable["layer"],
            epoch, None,
            f"The {data.source} gradient of {variable['name']}"
            + (f" and {len(culprits) - 1} other variable(s)"
               if len(culprits) > 1 else "")
            + f" held NaN or Inf elements in {_where(data, record)}; look "
            f"for an unsafe operation in layer {variable['layer']}, a "
            "learning rate that is too high, or bad input values.",
            {"variables": [data.variables[i]["name"] for i in culprits],
             "nan_inf_count": counts[record, culprits[0]]},
            data.source, at, "layer-stats"))
    skipped = data.scalar("skipped_steps")
    applied = data.scalar("steps")
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = skipped / (skipped + applied)
    start = _first_run(fraction >= SKIPPED_FRACTION, SKIPPED_RECORDS)
    if start is not None:
        epoch, step, at = _location(data, start)
        found.append(Finding(
            "nonfinite", "warning", None, None, epoch, step,
            f"The loss-scale optimizer skipped at least "
            f"{SKIPPED_FRACTION:.0%} of the steps in {SKIPPED_RECORDS} "
            f"records in a row from {_where(data, start)}: the scaled "
            "gradients keep overflowing; a NaN in the loss or the model "
            "rather than the loss scale is the usual cause.",
            {"skipped_fraction": [fraction[start + k]
                                  for k in range(SKIPPED_RECORDS)]},
            data.source, at, "norms"))
    return found


def vanishing(data):
    """The gradient falls by orders of magnitude from the output layers to
    the input layers."""
    kernels = _kernels(data)
    if len(kernels) < VANISHING_MIN_KERNELS:
        return []
    with np.errstate(invalid="ignore", divide="ignore"):
        decades = np.log10(_step_rms(data)[:, kernels])
        relative = decades - decades[:, -1:]  # against the output kernel
    holds = relative[:, 0] <= -VANISHING_DECADES
    start = _first_run(holds, min(VANISHING_RECORDS, len(holds)))
    if start is None:
        return []
    affected = [kernels[k] for k in range(len(kernels) - 1)
                if relative[start, k] <= -VANISHING_NAMED_DECADES]
    # a layer with several kernels (an LSTM's kernel and recurrent kernel)
    # is named once; the evidence is per kernel
    layers = list(dict.fromkeys(data.variables[i]["layer"] for i in affected))
    output = data.variables[kernels[-1]]
    epoch, step, at = _location(data, start)
    return [Finding(
        "vanishing", "warning", data.variables[affected[0]]["name"],
        layers[0], epoch, step,
        f"From {_where(data, start)} the gradient of "
        f"{', '.join(layers)} is {-relative[start, 0]:.1f} orders of "
        f"magnitude smaller than at the output layer {output['layer']}: "
        "the first layers barely learn; ReLU-family activations, a "
        "variance-preserving initialisation (He for ReLU), batch "
        "normalisation or residual connections usually fix it.",
        {"layers": layers,
         "step_rms": {data.variables[i]["name"]: 10 ** decades[start, k]
                      for k, i in enumerate(kernels)},
         "decades_below_output": {
             data.variables[i]["name"]: relative[start, k]
             for k, i in enumerate(kernels)},
         "records": int(np.sum(holds))},
        data.source, at, "flow")]


def exploding(data):
    """The gradient norm grows by orders of magnitude over recent records,
    or a few steps dominate a window."""
    found = []
    norm = _global_step_norm(data)
    with np.errstate(invalid="ignore", divide="ignore"):
        decades = np.log10(norm)
    finite = np.isfinite(decades)
    for record in range(1, len(decades)):
        if not finite[record]:
            continue
        before = decades[max(0, record - EXPLODING_LOOKBACK):record]
        before = before[np.isfinite(before)]
        if not before.size:
            continue
        growth = decades[record] - before.min()
        if growth < EXPLODING_DECADES:
            continue
        turns_nonfinite = bool(
            record + 1 < len(decades) and not finite[record + 1:].all())
        severe = growth >= EXPLODING_ERROR_DECADES or turns_nonfinite
        epoch, step, at = _location(data, record)
        found.append(Finding(
            "exploding", "error" if severe else "warning", None, None,
            epoch, step,
            f"The gradient norm grew {growth:.1f} orders of magnitude in "
            f"the {len(before)} records before {_where(data, record)}"
            + (" and then turned NaN/Inf" if turns_nonfinite else "")
            + ": lower the learning rate, clip gradients (clipnorm) or "
            "normalise the inputs and targets.",
            {"step_norm": norm[record], "lowest_step_norm_before":
             10 ** before.min(), "decades": growth},
            data.source, at, "norms"))
        break
    for record, step_value in enumerate(data.steps.tolist()):
        table = data.step_tables.get(step_value)
        if table is None or len(table) < 3:
            continue
        norms = table[:, 0]
        norms = norms[np.isfinite(norms)]
        if norms.size < 3 or not np.median(norms) > 0:
            continue
        ratio = norms.max() / np.median(norms)
        if ratio >= EXPLODING_SPIKE_RATIO:
            epoch, first_step, at = _location(data, record)
            spike = int(np.argmax(table[:, 0] == norms.max()))
            found.append(Finding(
                "exploding", "warning", None, None, epoch,
                None if first_step is None else first_step + spike,
                f"In {_where(data, record)} one step's gradient norm was "
                f"{ratio:.0f} times the median step's: a few steps dominate "
                "the updates (outlier batches or a sharp region of the "
                "loss); clip gradients or look at those batches.",
                {"max_step_norm": norms.max(),
                 "median_step_norm": float(np.median(norms)),
                 "ratio": ratio, "step_in_window": spike},
                data.source, at, "steps"))
            break
    return found


def _layer_dead_fractions(data):
    """``[(layer, kernel index, units, (records,) dead fraction)]`` of the
    layers with a kernel, in model order.

    A unit is dead when its kernel column and its bias element are both
    zero: a layer after a dead one has zero kernel gradients (no input)
    but a live bias. A fraction outside [0, 1] (damaged data) is NaN:
    evidence that says nothing, so the rule stays silent on it.
    """
    dead = data.stat("dead_units")
    dead = np.where((dead >= 0) & (dead <= 1), dead, np.nan)
    by_layer = {}
    for index, variable in enumerate(data.variables):
        by_layer.setdefault(variable["layer"], []).append(index)
    layers = []
    for layer, indices in by_layer.items():
        kernels = [i for i in indices if len(data.variables[i]["shape"]) >= 2]
        if not kernels:
            continue
        kernel = kernels[0]
        units = data.variables[kernel]["shape"][-1]
        bias = [i for i in indices if data.variables[i]["shape"] == [units]]
        fraction = dead[:, kernel]
        if bias:
            fraction = np.fmin(fraction, dead[:, bias[0]])
        layers.append((layer, kernel, units, fraction))
    return layers


def dead_units(data):
    """Layers with many output units whose gradient was exactly zero for a
    whole window (dead ReLUs).

    When every unit of several consecutive layers is dead, no gradient
    reaches the earlier ones at all: one finding names the last of them
    (nearest the output) and lists the others.
    """
    found = []
    last = len(data.steps) - 1
    layers = _layer_dead_fractions(data)
    blocked = []  # fully dead layers before the current one
    for position, (layer, kernel, units, fraction) in enumerate(layers):
        following = layers[position + 1] if position + 1 < len(layers) else None
        if fraction[last] >= 1.0 and following is not None and (
                following[3][last] >= 1.0):
            blocked.append(layer)
            continue
        upstream, blocked = blocked, []
        needed = min(DEAD_UNITS_RECORDS, len(fraction))
        severity = None
        for level, threshold in (("warning", DEAD_UNITS_WARNING),
                                 ("info", DEAD_UNITS_INFO)):
            holds = fraction >= threshold
            if holds[last - needed + 1:].all():
                severity = level
                break
        if severity is None:
            continue
        start = last
        while start > 0 and holds[start - 1]:
            start -= 1
        epoch, step, at = _location(data, start)
        variable = data.variables[kernel]
        windows = "epochs" if data.per_epoch else "windows"
        found.append(Finding(
            "dead_units", severity, variable["name"], layer, epoch, step,
            f"{fraction[last]:.0%} of the {units} units of {layer} have had "
            f"a zero gradient for whole {windows} since "
            f"{_where(data, start)}"
            + (f", and no gradient reaches {', '.join(upstream)} before it"
               if upstream else "")
            + ": they no longer learn (dead ReLUs); a smaller learning "
            "rate, He initialisation, a zero or positive bias initialiser "
            "or LeakyReLU usually revive them.",
            {"dead_fraction": fraction[last], "units": units,
             "dead_fraction_first": fraction[start],
             "layers_without_gradient": upstream},
            data.source, at, "heatmap"))
    return found


def cancellation(data):
    """The dissolving norm close to the accumulated norm for many records:
    the window gradients mostly cancel out."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (np.nansum(data.stat("dissolving_norm"), axis=1)
                 / np.nansum(data.stat("accumulated_norm"), axis=1))
    # a window whose gradient held NaN or Inf says nothing about
    # cancellation (its finite part is what is left)
    clean = (np.nansum(data.stat("nan_count") + data.stat("inf_count"),
                       axis=1) == 0) & (_global_step_norm(data) > 0)
    ratio = np.where(clean & np.isfinite(ratio), ratio, np.nan)
    start = _first_run(ratio >= CANCELLATION_FRACTION, CANCELLATION_RECORDS)
    if start is None:
        return []
    epoch, step, at = _location(data, start)
    return [Finding(
        "cancellation", "info", None, None, epoch, step,
        f"From {_where(data, start)} on, {ratio[start]:.0%} of the gradient "
        "summed over the run has cancelled out: the updates mostly undo "
        "each other, a sign of a learning rate that is too high or of "
        "noisy gradients (a larger batch or a decaying learning rate "
        "helps).",
        {"dissolving_to_accumulated": ratio[start],
         "records": CANCELLATION_RECORDS},
        data.source, at, "norms")]


RULES = (nonfinite, vanishing, exploding, dead_units, cancellation)
