"""The gradient state saved beside the logs, so that a resumed run continues.

A run that is killed and resumed (`keras.callbacks.BackupAndRestore`, or
``fit(initial_epoch=e)`` after the user restored the model) re-runs from an
epoch boundary. The accumulated gradient ``C``, the pooled ``A`` and the
window counters are not in the model's or the optimizer's checkpoint (they
must not be: a model saved with the callback is the model saved without
it), so the callback writes them itself, at every epoch end, to

    <log_dir>/gradient_state/epoch-<epoch>.npz

(`STATE_DIRECTORY`), one file per epoch, the last `KEEP` epochs kept. The
first epoch of a resumed `fit`, epoch ``e``, reads ``epoch-<e-1>``: the
state as it was when the checkpoint it resumes from was taken.

**Atomic.** A file is written under a temporary name and renamed into
place, so a process killed while writing leaves the previous files intact
and never a partial one under the final name. TensorBoard ignores the
directory (it holds no event files).

**Cost.** Per epoch, the state is written by a background thread
(`StateWriter`) while training goes on: it is read to the host in chunks of
at most `CHUNK_BYTES` (the host never holds the whole state, nor a whole
large variable):
6 bytes per parameter (``C`` float32 and its bfloat16 compensation) plus
8 bytes per heatmap cell and a few per variable; with step windows, the
open window's sums as well (4 bytes per parameter). Nothing is written per
step or per window.

A file is an ``.npz`` archive: ``meta`` (a JSON string: `FORMAT`, the
epoch, optimizer step, window settings and counters, and per source the
variables' names and shapes, which a resume checks) and one array per
state tensor, named ``<source>/<group>/<field>`` and ``capture/<name>``.
"""

import io
import json
import os
import re
import threading
import zipfile

import numpy as np
import tensorflow as tf

STATE_DIRECTORY = "gradient_state"
FORMAT = 1
KEEP = 2
CHUNK_BYTES = 16 * 2**20
_NAME = re.compile(r"^epoch-(\d+)\.npz$")


def state_path(directory, epoch):
    return os.path.join(directory, f"epoch-{epoch:06d}.npz")


def saved_epochs(directory):
    """The epochs that have a state file in ``directory``, ascending."""
    if not tf.io.gfile.isdir(directory):
        return []
    epochs = []
    for name in tf.io.gfile.listdir(directory):
        match = _NAME.match(name)
        if match:
            epochs.append(int(match.group(1)))
    return sorted(epochs)


def save(directory, epoch, meta, arrays):
    """Writes one epoch's state atomically; keeps the last `KEEP` epochs.

    Args:
      directory: the state directory (created if missing).
      epoch: the epoch that just ended.
      meta: a JSON-serialisable dict.
      arrays: an iterable of ``(name, array or tensor)``; each is written
        before the next one is read, a tensor in chunks, so that the host
        holds at most `CHUNK_BYTES` of state at a time.
    """
    tf.io.gfile.makedirs(directory)
    final = state_path(directory, epoch)
    temporary = f"{final}.tmp-{os.getpid()}"
    meta = dict(meta, format=FORMAT, epoch=int(epoch))
    try:
        with tf.io.gfile.GFile(temporary, "wb") as handle:
            with zipfile.ZipFile(_WriteOnly(handle), "w", zipfile.ZIP_STORED,
                                 allowZip64=True) as archive:
                _write_array(archive, "meta", np.array(json.dumps(meta)))
                for name, array in arrays:
                    _write_array(archive, name, array)
        tf.io.gfile.rename(temporary, final, overwrite=True)
    except BaseException:
        _remove(temporary)
        raise
    for old in saved_epochs(directory)[:-KEEP]:
        _remove(state_path(directory, old))


class _WriteOnly:
    """A stream zipfile writes to sequentially (GFile cannot seek while
    writing; zipfile then writes data descriptors instead)."""

    def __init__(self, handle):
        self._handle = handle

    def write(self, data):
        self._handle.write(data)
        return len(data)

    def flush(self):
        self._handle.flush()


class StateWriter:
    """Writes state files on a background thread, one at a time.

    The window-end state is replaced only by the next window end, so a
    save can hold the epoch's arrays and write them while training goes
    on: the epoch end does not wait for the device-to-host copy and the
    disk. The next window end calls `wait` first (the JAX kernel reuses
    the compensation's buffer, the torch kernel C's). Mutable inputs (variables)
    must be read into tensors before `submit`. `wait` (before the next
    window end and save, and at the end of training) joins the write and
    returns its error, if any.
    """

    def __init__(self):
        self._thread = None
        self._error = None

    def submit(self, directory, epoch, meta, arrays):
        """Starts writing (after the previous write has finished); returns
        the previous write's error, or None."""
        error = self.wait()
        arrays = list(arrays)
        self._thread = threading.Thread(
            target=self._write, args=(directory, epoch, meta, arrays),
            name=f"tb_gradients-state-{epoch}")
        self._thread.start()
        return error

    def _write(self, directory, epoch, meta, arrays):
        try:
            save(directory, epoch, meta, arrays)
        except Exception as error:  # reported by the next wait()
            self._error = error

    def wait(self):
        """Joins the running write; returns its error (or None)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        return error


def _write_array(archive, name, value):
    """One ``.npy`` member; a device array (TensorFlow, JAX or torch) is
    copied to the host in chunks of at most `CHUNK_BYTES`, so the host never
    holds a whole large variable."""
    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
        if isinstance(value, np.ndarray) or np.isscalar(value):
            np.lib.format.write_array(member, np.asarray(value),
                                      allow_pickle=False)
            return
        flat = _flat(value)
        shape = tuple(int(d) for d in value.shape)
        dtype = _host(flat[:0]).dtype
        size = int(np.prod(shape, dtype=np.int64))
        chunk = max(1, CHUNK_BYTES // dtype.itemsize)
        if size <= chunk:  # one read: the slicing costs more than it saves
            np.lib.format.write_array(member, _host(flat).reshape(shape),
                                      allow_pickle=False)
            return
        np.lib.format.write_array_header_2_0(member, {
            "descr": np.lib.format.dtype_to_descr(dtype),
            "fortran_order": False, "shape": shape})
        for start in range(0, size, chunk):
            member.write(_host(flat[start:start + chunk]).tobytes())


def _flat(value):
    """A device array's flat view (a reshape on the device)."""
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return tf.reshape(value, [-1])
    return value.reshape(-1)


def _host(value):
    """A host (numpy) copy of a TensorFlow, JAX or torch array."""
    if hasattr(value, "detach"):  # torch
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy"):  # TensorFlow
        return value.numpy()
    return np.asarray(value)


def load(directory, epoch):
    """The state written at the end of ``epoch``: ``(meta, arrays)``.

    Returns None when there is no such file. A file that cannot be read
    (damaged, or from a newer format) raises ValueError naming it.
    """
    path = state_path(directory, epoch)
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            data = io.BytesIO(handle.read())
        with np.load(data, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            arrays = {name: archive[name] for name in archive.files
                      if name != "meta"}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"cannot read the gradient state {path}: "
                         f"{error}") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"the gradient state {path} has format "
                         f"{meta.get('format') if isinstance(meta, dict) else None!r}"
                         f"; this version reads format {FORMAT}")
    return meta, arrays


def clear(directory):
    """Removes every state file (a run that starts again from epoch 0)."""
    for epoch in saved_epochs(directory):
        _remove(state_path(directory, epoch))


def _remove(path):
    try:
        tf.io.gfile.remove(path)
    except tf.errors.NotFoundError:
        pass


def with_prefix(prefix, arrays):
    """``(name, array)`` pairs with ``prefix/`` in front of each name."""
    return ((f"{prefix}/{name}", array) for name, array in arrays)


def under_prefix(prefix, arrays):
    """The arrays named ``prefix/...``, without the prefix."""
    start = f"{prefix}/"
    return {name[len(start):]: array for name, array in arrays.items()
            if name.startswith(start)}


# -- what a callback's run saves (the schema) ----------------------------------


def run_arrays(windows, capture, step_windows):
    """Every array of a run's state, named: each source's accumulated state
    (``<source>/...``), the training capture's run state (``run/...``) and,
    with step windows, its open window (``capture/...``).

    Args:
      windows: ``{source: window.source.SourceWindows}``.
      capture: the training capture, or None.
      step_windows: whether the run's windows are of N steps.
    """
    arrays = [with_prefix(source, state.state_arrays())
              for source, state in windows.items()]
    if capture is not None:
        arrays.append(with_prefix("run", capture.run_arrays()))
        if step_windows:
            arrays.append(with_prefix("capture",
                                      capture.open_window_arrays()))
    for named in arrays:
        yield from named


def run_meta(step, window, window_index, window_start, signatures):
    """The ``meta`` of a run's state file: the optimizer step, the window
    settings and counters, and per source its variables' signature."""
    return {"step": int(step), "window": window,
            "window_index": int(window_index),
            "window_start": int(window_start), "sources": signatures}


def restore_run(meta, arrays, window, sources, signature_of, windows_of,
                capture):
    """Continues a run from a state file; ValueError naming what differs.

    Args:
      meta, arrays: from `load`.
      window: this callback's ``gradient_window`` (must be the saved one).
      sources: the sources this callback records.
      signature_of: ``source -> (variables, groups, signature)`` of this
        model.
      windows_of: ``(source, variables, groups) -> SourceWindows`` (made for
        these variables, then loaded).
      capture: the training capture, or None.

    Returns:
      ``(window_index, window_start, saved_step)`` with step windows, else
      None.
    """
    if meta.get("window") != window:
        raise ValueError(
            f"it was recorded with gradient_window={meta.get('window')!r}, "
            f"this callback has gradient_window={window!r}")
    saved = meta.get("sources", {})
    for source in sources:
        if source not in saved:
            continue
        variables, groups, signature = signature_of(source)
        if saved[source] != signature:
            raise ValueError(f"the {source} variables differ from the "
                             "model's")
        windows_of(source, variables, groups).load_state_arrays(
            under_prefix(source, arrays))
    if capture is not None and "training" in saved:
        capture.load_run_arrays(under_prefix("run", arrays))
    if window == "epoch":
        return None
    if capture is not None:
        capture.load_open_window_arrays(under_prefix("capture", arrays))
    return (int(meta["window_index"]), int(meta["window_start"]),
            meta["step"])
