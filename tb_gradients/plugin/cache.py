"""The plugin's cache of computed answers, kept while their data is unchanged.

A cached value is keyed by the `series_signature` of the series it was
built from, so a step logged since makes a new key and the value is built
again.
"""

import collections
import threading


class BodyCache:
    """A small thread-safe LRU of computed answers, bounded in size.

    A key must include a signature of the data the value was built from
    (each series' last step and wall time), so that a value is reused only
    while nothing new was logged. Worth it for `/variable_stats`, whose
    body takes thousands of tensor reads and megabytes of JSON, and for the
    epoch counts of `/runs`, which need a read.

    Args:
      max_bytes: Bound on the summed sizes (text: its length; anything
        else counts as 1 KiB).
      max_entries: Bound on the number of entries (keys hold signatures).
    """

    def __init__(self, max_bytes=64 * 2**20, max_entries=256):
        self._max_bytes = max_bytes
        self._max_entries = max_entries
        self._bytes = 0
        self._entries = collections.OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _size(value):
        return len(value) if isinstance(value, (str, bytes)) else 1024

    def get_or_build(self, key, build):
        """The cached value of ``key``, or ``build()`` (then cached)."""
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
                return value
        value = build()
        self._put(key, value)
        return value

    def _put(self, key, value):
        size = self._size(value)
        if size > self._max_bytes:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = value
            self._bytes += size
            while (self._bytes > self._max_bytes
                   or len(self._entries) > self._max_entries):
                _, old = self._entries.popitem(last=False)
                self._bytes -= self._size(old)

    def clear(self):
        with self._lock:
            self._entries.clear()
            self._bytes = 0


def series_signature(tag_to_series, tags):
    """What identifies the current data of ``tags``: last step, wall time."""
    return tuple(
        (tag, int(tag_to_series[tag].max_step),
         float(tag_to_series[tag].max_wall_time))
        for tag in sorted(tags) if tag in tag_to_series)
