"""What every kind's decoding shares: the one error a reader meets on data
it cannot read (`ReadError`), and the checks of an array against a kind's
layout in docs/FORMAT.md.

Each kind's module decodes its own tensors with these (``decode`` next to
its ``write_*``), so the plugin, the offline reader and ``diagnose`` reject
the same things with the same words. A reader catches `ReadError` per tag
(or per sample) and goes on: a damaged tag never hides its run, a damaged
run never hides the others.
"""

import contextlib

import numpy as np


class ReadError(ValueError):
    """Data of a log directory that this version cannot read.

    Attributes:
      reason: what was expected and what was found ("expected a float64
        vector of 22 values, found shape (1,) float64"), or why a series is
        skipped ("written by format version 3; ...").
      run, tag, step: where, as far as the raiser knows (None: unknown or
        not about one tag or step); `located` fills them in on the way up.
    """

    def __init__(self, reason, run=None, tag=None, step=None):
        super().__init__(reason)
        self.reason = reason
        self.run = run
        self.tag = tag
        self.step = step

    def located(self, run=None, tag=None, step=None):
        """This error with the location fields it lacks filled in."""
        return ReadError(self.reason,
                         run=self.run if self.run is not None else run,
                         tag=self.tag if self.tag is not None else tag,
                         step=self.step if self.step is not None else step)

    def __str__(self):
        where = []
        if self.run is not None:
            where.append(f"run {self.run!r}")
        if self.tag is not None:
            where.append(f"tag {self.tag!r}")
        if self.step is not None:
            where.append(f"step {self.step}")
        return (", ".join(where) + ": " if where else "") + self.reason

    def to_json(self, more=0):
        """``{"run", "tag", "step", "reason", "message", "more"}``
        (docs/API.md): ``more`` further tags or steps were skipped for the
        same reason (`grouped`)."""
        return {"run": self.run, "tag": self.tag, "step": self.step,
                "reason": self.reason, "message": str(self), "more": more}


def grouped(errors):
    """``[(first error, how many more)]`` of ``errors`` per reason, in
    order of first appearance: a run from a newer version fails every tag
    for one reason, and is named once."""
    firsts, counts = {}, {}
    for error in errors:
        firsts.setdefault(error.reason, error)
        counts[error.reason] = counts.get(error.reason, 0) + 1
    return [(first, counts[reason] - 1) for reason, first in firsts.items()]


def errors_json(errors):
    """`grouped` ``errors`` as JSON objects (`ReadError.to_json`)."""
    return [first.to_json(more) for first, more in grouped(errors)]


def describe(array):
    """``shape (1,) float64``: what was found, for a `ReadError`."""
    return f"shape {tuple(array.shape)!r} {array.dtype}"


def checked(value, what, ndim=None, kinds="f", shape=None, dtype=None):
    """``value`` as an ndarray, when it has the layout of ``what``.

    Args:
      what: the expected layout in words, for the error ("a float64 vector
        of 22 values").
      ndim: the expected rank (None: any).
      kinds: accepted numpy dtype kinds (``"f"`` floating, ``"u"``
        unsigned, ``"iu"`` any integer).
      shape: the expected shape, ``None`` per axis that may be any length.
      dtype: the one accepted dtype (instead of ``kinds``).

    Raises:
      ReadError: "expected <what>, found <shape> <dtype>".
    """
    array = np.asarray(value)
    ok = (array.dtype == np.dtype(dtype) if dtype is not None
          else array.dtype.kind in kinds)
    if ndim is not None and array.ndim != ndim:
        ok = False
    if ok and shape is not None:
        ok = len(shape) == array.ndim and all(
            want is None or want == got
            for want, got in zip(shape, array.shape))
    if not ok:
        raise ReadError(f"expected {what}, found {describe(array)}")
    return array


@contextlib.contextmanager
def locating(run=None, tag=None, step=None):
    """Adds what the caller knows of the location (`ReadError.located`) to
    a `ReadError` raised inside: the decoders know neither run nor tag."""
    try:
        yield
    except ReadError as error:
        raise error.located(run=run, tag=tag, step=step) from None
