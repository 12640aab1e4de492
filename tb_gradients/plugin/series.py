"""What a plugin series' records are: one per step, and what a step covers.

Pure helpers of the Gradients plugin, like `plugin.stats`:

- `latest_by_step`: a run restarted after a crash writes a second event file
  into the same run directory and records some steps again. TensorBoard's
  Python loader keeps both recordings; every route shows each step once,
  the latest recording.
- `series_window` / `run_window`: what one record covers (docs/FORMAT.md,
  ``window``): an epoch (the step is the epoch index) or a window of N
  optimizer steps (the step is the global optimizer step at its end).
"""

from tb_gradients.format import metadata

# The ``window`` of epoch records (and of version-1 series, which have none).
EPOCH_WINDOW = "epoch"


def latest_by_step(data):
    """One datum per step, the latest recording, sorted by step.

    Args:
      data: ``TensorDatum``s or ``ScalarDatum``s of one series, in the order
        the data provider returns them (the order they were read).

    Returns:
      A list with, for each distinct step, the datum of the largest
      ``wall_time``; of equal wall times, the one read last.
    """
    latest = {}
    for datum in data:
        step = int(datum.step)
        kept = latest.get(step)
        if kept is None or float(datum.wall_time) >= float(kept.wall_time):
            latest[step] = datum
    return [latest[step] for step in sorted(latest)]


def by_step(data):
    """``{step: datum}`` of `latest_by_step`, in step order."""
    return {int(datum.step): datum for datum in latest_by_step(data)}


def steps_of(data):
    """The sorted distinct steps of a series' data."""
    return sorted({int(datum.step) for datum in data})


def series_window(content):
    """The ``window`` of one series' parsed content.

    Returns:
      ``"epoch"`` for epoch records, version-1 series (no field) and any
      value this code does not understand; else the positive number of
      optimizer steps per record.
    """
    window = content.get("window", EPOCH_WINDOW)
    if isinstance(window, int) and not isinstance(window, bool) and window > 0:
        return window
    return EPOCH_WINDOW


def run_window(parsed):
    """The ``window`` of a run, from its statistics series.

    Args:
      parsed: ``{tag: parsed content}`` of one run
        (`plugin.listing.parse_listing`).

    Returns:
      The window of the run's variable statistics series, in
      ``metadata.SOURCES`` then tag order (the callback writes every series
      of a run with the same window); ``"epoch"`` when it has none.
    """
    for source in metadata.SOURCES:
        for tag in sorted(parsed):
            content = parsed[tag]
            if (content.get("kind") == metadata.KIND_VARIABLE_STATS
                    and content.get("source") == source):
                return series_window(content)
    return EPOCH_WINDOW
