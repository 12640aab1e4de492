"""The plugin's request parameters: parsed strictly, rejected with a reason.

Each parser takes the text of one query parameter (``None`` when absent)
and returns the value a route uses, or raises an error whose message the
route answers with a 400 (docs/API.md, Errors).
"""

import collections
import re

from tb_gradients.format import variable_stats

_INTEGER = re.compile(r"^[+-]?[0-9]{1,18}$")


def parse_integer(text):
    """``int(text)`` for a plain decimal integer, else ``None``.

    Stricter than `int`, which accepts ``"1_0"``, spaces and unicode digits.
    """
    if not isinstance(text, str) or not _INTEGER.match(text):
        return None
    return int(text)


class RequestedStep(collections.namedtuple("RequestedStep",
                                           ["value", "parameter"])):
    """The record a route was asked for: its summary step (an epoch index
    or a window's last optimizer step) and the name of the parameter that
    gave it (``step``, or ``epoch`` from older links), for the messages."""


# The parameter naming a record, then its older name (docs/API.md).
STEP_PARAMETERS = ("step", "epoch")


def parse_step(texts):
    """The ``step`` parameter (or its older name ``epoch``).

    Args:
      texts: ``{parameter: text or None}`` for `STEP_PARAMETERS`.

    Returns:
      ``None`` when neither is given (the latest record), else a
      `RequestedStep`.

    Raises:
      ValueError: When the given one is not a decimal integer, or both are
        given with different values.
    """
    given = [(name, texts.get(name)) for name in STEP_PARAMETERS
             if texts.get(name) not in (None, "")]
    if not given:
        return None
    steps = []
    for name, text in given:
        value = parse_integer(text)
        if value is None:
            raise ValueError("Parameter %r must be an integer. Received: "
                             "%s=%r" % (name, name, text))
        steps.append(RequestedStep(value, name))
    if len({step.value for step in steps}) > 1:
        raise ValueError(
            "Parameters 'step' and 'epoch' name the same record; give one. "
            "Received: %s" % ", ".join("%s=%r" % item for item in given))
    return steps[0]


# Bounds of the ``points`` parameter: a bucket needs a first and a last
# point, and no chart is wider than this many pixels.
MIN_POINTS = 2
MAX_POINTS = 100000


def parse_points(text):
    """The ``points`` parameter: ``None`` when absent, else an int.

    Raises:
      ValueError: When it is not a decimal integer in
        ``[MIN_POINTS, MAX_POINTS]``.
    """
    if text is None or text == "":
        return None
    points = parse_integer(text)
    if points is None or not MIN_POINTS <= points <= MAX_POINTS:
        raise ValueError("must be an integer from %d to %d"
                         % (MIN_POINTS, MAX_POINTS))
    return points


def parse_step_range(start_text, end_text):
    """The ``start`` / ``end`` parameters: ``(start or None, end or None)``.

    Raises:
      ValueError: ``(name, message)`` when one is not a decimal integer, or
        when ``start > end``.
    """
    bounds = []
    for name, text in (("start", start_text), ("end", end_text)):
        if text is None or text == "":
            bounds.append(None)
            continue
        value = parse_integer(text)
        if value is None:
            raise ValueError(name, "must be an integer")
        bounds.append(value)
    start, end = bounds
    if start is not None and end is not None and start > end:
        raise ValueError("start", "must not be after end (%d)" % (end,))
    return start, end


def parse_stat_names(text):
    """The statistics asked for by ``stats=name1,name2``, or ``None``.

    Names keep the order given; a repeated name is kept once.

    Raises:
      ValueError: When a name is not one of ``VARIABLE_STAT_NAMES`` (the
        message lists the unknown ones).
    """
    if not text:
        return None
    names = []
    for name in text.split(","):
        if name not in names:
            names.append(name)
    unknown = [n for n in names if n not in variable_stats.VARIABLE_STAT_NAMES]
    if unknown:
        raise ValueError("unknown statistics %r" % (unknown,))
    return tuple(names)


def compile_filter(text):
    """The compiled variable filter, or ``None`` when there is none.

    Raises:
      re.error: When ``text`` is not a valid Python regular expression.
    """
    if not text:
        return None
    return re.compile(text)
