"""JSON of the plugin's bodies: strict, compact, and gzip-compressed.

Every body of docs/API.md goes through `dumps`, which never writes ``NaN``
or ``Infinity`` (browsers reject them). Large float32 arrays are written
straight to text with the shortest decimals that read back as the same
float32 (`float32_json`), and the large cached bodies are kept compressed
(`gzip_json`).
"""

import gzip
import json
import math

import numpy as np

# -- strict JSON --------------------------------------------------------------


def json_safe(value):
    """``value`` with every NaN/±Inf replaced by ``None``, numpy made plain.

    Browsers' ``JSON.parse`` rejects the ``NaN`` / ``Infinity`` tokens that
    Python's `json` writes by default, so every body goes through this.

    Args:
      value: Nested dicts, lists, tuples, numbers, strings, numpy values.

    Returns:
      The same structure with lists for tuples/arrays and ``None`` for
      non-finite floats.
    """
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def dumps(value):
    """Strict JSON text of ``value`` (never ``NaN`` or ``Infinity``).

    The bodies are built with ``None`` already in place of non-finite
    numbers, so the direct encoding nearly always succeeds; the recursive
    `json_safe` pass (a third of the time of a large body) only runs when
    it fails. Values of a dict ``value`` that are `JSONText` are embedded
    as they are.
    """
    if isinstance(value, dict) and any(
            isinstance(item, JSONText) for item in value.values()):
        plain = {key: item for key, item in value.items()
                 if not isinstance(item, JSONText)}
        texts = ",".join(
            "%s:%s" % (json.dumps(str(key)), item)
            for key, item in sorted(value.items(), key=lambda kv: str(kv[0]))
            if isinstance(item, JSONText))
        head = dumps(plain)[:-1]
        return head + ("," if plain else "") + texts + "}"
    options = {"allow_nan": False, "sort_keys": True,
               "separators": (",", ":")}
    try:
        return json.dumps(value, **options)
    except (TypeError, ValueError):
        return json.dumps(json_safe(value), **options)


def gzip_json(value):
    """`dumps` of ``value``, gzip-compressed (level 3, as TensorBoard does).

    The large cached bodies are kept compressed: a repeated request then
    costs neither the encoding nor the compression (megabytes for long
    runs), and the cache holds several times more of them.
    """
    return gzip.compress(dumps(value).encode("utf-8"), compresslevel=3,
                         mtime=0)


def finite_or_none(value):
    """A float for a finite number, else ``None``."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def finite_list(array):
    """A flat list of floats with ``None`` where the value is non-finite."""
    array = np.asarray(array, dtype=np.float64).reshape(-1)
    finite = np.isfinite(array)
    values = array.tolist()
    if not finite.all():
        for index in np.flatnonzero(~finite).tolist():
            values[index] = None
    return values


def nested_or_none(array):
    """``array.tolist()`` with ``None`` for every non-finite element."""
    array = np.asarray(array, dtype=np.float64)
    finite = np.isfinite(array)
    if finite.all():
        return array.tolist()
    values = array.astype(object)
    values[~finite] = None
    return values.tolist()


# -- float32 data -------------------------------------------------------------


class JSONText(str):
    """JSON text that `dumps` embeds as it is, as a value of a dict.

    Large float32 arrays are written to text directly (`float32_json`):
    building Python floats and letting `json` print them costs twice the
    time for a longer result.
    """


def float32_json(array):
    """JSON text of a float32 array: nested lists of the shortest numbers.

    ``float(np.float32(x))`` prints with up to 17 significant digits, of
    which only the first 6 to 9 mean anything. Here each number is the
    shortest decimal that reads back as the same float32 (numpy's
    ``repr``), so ``Math.fround`` (or ``numpy.float32``) recovers the
    stored value exactly and the text is about 40 % shorter; ``null``
    where the value is non-finite.

    Args:
      array: Any array; it is converted to float32 first (values computed
        in float64 from float32 data carry no more meaning than that).

    Returns:
      A `JSONText`.
    """
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 0:
        return JSONText(dumps(float32_or_none(array)))
    if array.size == 0:
        return JSONText(dumps(np.zeros(array.shape).tolist()))
    text = array.astype(str)
    finite = np.isfinite(array)
    if not finite.all():
        text[~finite] = "null"
    parts = ["[" + ",".join(row) + "]"
             for row in text.reshape(-1, array.shape[-1]).tolist()]
    for size in reversed(array.shape[:-1]):
        parts = ["[" + ",".join(parts[i:i + size]) + "]"
                 for i in range(0, len(parts), size)]
    return JSONText(parts[0])


def float32_or_none(value):
    """One number as `float32_json` writes it; ``None`` if non-finite."""
    if value is None:
        return None
    value = np.float32(value)
    return float(str(value)) if np.isfinite(value) else None
