"""`GradientTensorBoard`: Keras's TensorBoard callback plus gradient logging.

Orchestration only: `capture` gets the gradients (one module per backend),
`window` computes the statistics, `writer` writes; with several processes
only the chief writes (`distribution`).
"""

import functools
import numbers
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from tb_gradients import capture
from tb_gradients import distribution
from tb_gradients import resume
from tb_gradients import writer
from tb_gradients.analysis import findings
from tb_gradients.analysis import monitor
from tb_gradients.capture import probe_data as probe_batching
from tb_gradients.capture import recurrent
from tb_gradients.format import findings_table
from tb_gradients.format import gates
from tb_gradients.format import heatmap
from tb_gradients.format import timesteps
from tb_gradients.window import source as window

SOURCE_CHOICES = ("training", "probe", "both")


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer. Received: "
                        f"{name}={value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}. Received: "
                         f"{name}={value!r}")
    return int(value)


def _unique_names(variables, model_name=None):
    """Stable, unique display names: the Keras variable path.

    The model's own name (``sequential_3/``) is dropped from the front, so
    that the same architecture trained twice in one process has the same
    variable names in both runs, which is what side-by-side views match on.
    """
    names, seen = [], {}
    prefix = f"{model_name}/" if model_name else None
    for variable in variables:
        name = str(getattr(variable, "path", None) or variable.name)
        if prefix and name.startswith(prefix) and len(name) > len(prefix):
            name = name[len(prefix):]
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        names.append(name)
    return names


class GradientTensorBoard(keras.callbacks.TensorBoard):
    """TensorBoard callback that also records how the gradients evolve.

    Every argument of `keras.callbacks.TensorBoard` keeps working. Per epoch
    (every ``gradient_freq`` epochs) and per trainable variable it writes the
    statistics of docs/STATISTICS.md, gradient histograms (the old
    ``write_grads``) and pooled heatmaps, read by the "Gradients" tab.

    Args:
      log_dir: as for `keras.callbacks.TensorBoard`.
      source: ``"training"`` (default) records the gradients the optimizer
        applied, summed over each epoch, at no extra forward/backward cost;
        ``"probe"`` computes the gradient on ``probe_data`` at each logged
        epoch's end; ``"both"`` does both.
      probe_data: ``(x, y)`` or ``(x, y, sample_weight)`` arrays, or a
        batched `tf.data.Dataset` of such tuples.
      probe_batches: at most this many batches of a probe dataset are used.
      probe_batch_size: batch size used to split probe arrays.
      gradient_freq: log gradients every this many windows (windows with
        ``index % gradient_freq == 0``).
      gradient_window: ``"epoch"`` (default): each record covers an epoch,
        at the epoch's step; an int N: each record covers N optimizer steps
        (windows may span epochs), at the global optimizer step of the
        window's end; the last, partial window of a `fit` is recorded too.
      stop_on: finding kinds (docs/FINDINGS.md, e.g. ``("nonfinite",)``)
        that stop training: a new finding of such a kind sets
        ``model.stop_training`` (a warning names it). Default: none. Every
        new finding of severity warning or error is reported once with
        `warnings.warn` and written to the Text tab either way.
      resume_state: write the accumulated gradient state to
        ``<log_dir>/gradient_state/`` at each epoch end, and continue from
        it when a `fit` resumes at a later epoch (`BackupAndRestore`,
        ``initial_epoch``), so that the accumulated series go on as in an
        uninterrupted run. False: nothing is written; a resumed run
        accumulates anew.
      heatmap_cells: at most this many cells per variable heatmap (0: no
        heatmaps).
      heatmap_encoding: ``"uint8"`` (log-quantised, 1 byte per cell, 2.8 %
        relative error) or ``"float32"`` (exact).
      histograms: write per-variable gradient histograms.
      histogram_buckets: buckets per histogram.
      timestep_layers: layers (names or objects) whose output gradient is
        recorded per timestep on the probe data, in addition to every
        recurrent layer (SimpleRNN, LSTM, GRU, ConvLSTM, Bidirectional);
        ``[]`` turns timestep gradients off. Needs ``probe_data``.
      timestep_samples: probe samples used for timestep gradients.
      timestep_cells: timesteps are block-averaged to at most this many.
      timestep_channels: channels (per direction) are block-averaged to at
        most this many.
      **kwargs: any other `keras.callbacks.TensorBoard` argument.
    """

    def __init__(self, log_dir="logs", source="training", probe_data=None,
                 probe_batches=8, probe_batch_size=128, gradient_freq=1,
                 gradient_window="epoch", stop_on=(), resume_state=True,
                 heatmap_cells=128 * 128, heatmap_encoding="uint8",
                 histograms=True, histogram_buckets=30, timestep_layers=None,
                 timestep_samples=16, timestep_cells=512, timestep_channels=32,
                 **kwargs):
        distribution.check_backend(keras.backend.backend())
        if not isinstance(source, str) or source not in SOURCE_CHOICES:
            raise ValueError(f"`source` must be one of {SOURCE_CHOICES}. "
                             f"Received: source={source!r}")
        self.gradient_freq = _check_int("gradient_freq", gradient_freq, 1)
        if gradient_window != "epoch":
            if isinstance(gradient_window, str):
                raise ValueError(
                    "`gradient_window` must be 'epoch' or a number of "
                    f"optimizer steps. Received: "
                    f"gradient_window={gradient_window!r}")
            gradient_window = _check_int("gradient_window", gradient_window,
                                         1)
        self.gradient_window = gradient_window
        if not isinstance(resume_state, bool):
            raise TypeError(f"`resume_state` must be True or False. "
                            f"Received: resume_state={resume_state!r}")
        self.resume_state = resume_state
        if isinstance(stop_on, str) or not isinstance(stop_on, (list, tuple)):
            raise TypeError(
                "`stop_on` must be a list or tuple of finding kinds, e.g. "
                f"('nonfinite',). Received: stop_on={stop_on!r}")
        unknown = [kind for kind in stop_on if kind not in findings.KINDS]
        if unknown:
            raise ValueError(
                f"`stop_on` names unknown finding kinds {unknown!r}; the "
                f"kinds are {findings.KINDS}. Received: stop_on={stop_on!r}")
        self.stop_on = tuple(stop_on)
        self.heatmap_cells = _check_int("heatmap_cells", heatmap_cells, 0)
        self.probe_batches = _check_int("probe_batches", probe_batches, 1)
        self.probe_batch_size = _check_int("probe_batch_size",
                                           probe_batch_size, 1)
        self.histogram_buckets = _check_int("histogram_buckets",
                                            histogram_buckets, 1)
        self.timestep_samples = _check_int("timestep_samples",
                                           timestep_samples, 1)
        self.timestep_cells = _check_int("timestep_cells", timestep_cells, 1)
        self.timestep_channels = _check_int("timestep_channels",
                                            timestep_channels, 1)
        if timestep_layers is not None and not isinstance(
                timestep_layers, (list, tuple)):
            raise TypeError(
                "`timestep_layers` must be a list of layer names or layers. "
                f"Received: timestep_layers={timestep_layers!r}")
        if timestep_layers and probe_data is None:
            raise ValueError(
                "`timestep_layers` needs `probe_data`: gradients with "
                "respect to layer outputs are computed on probe samples. "
                f"Received: timestep_layers={list(timestep_layers)!r}, "
                "probe_data=None")
        if heatmap_encoding not in heatmap.HEATMAP_ENCODINGS:
            raise ValueError(
                f"`heatmap_encoding` must be one of "
                f"{heatmap.HEATMAP_ENCODINGS}. Received: "
                f"heatmap_encoding={heatmap_encoding!r}")
        if not isinstance(histograms, bool):
            raise TypeError(f"`histograms` must be True or False. Received: "
                            f"histograms={histograms!r}")
        if source in ("probe", "both") and probe_data is None:
            raise ValueError(
                f"source={source!r} needs `probe_data`, (x, y) arrays or a "
                "tf.data.Dataset to compute gradients on. Received: "
                "probe_data=None")
        super().__init__(log_dir=log_dir, **kwargs)
        self.source = source
        self.heatmap_encoding = heatmap_encoding
        self.histograms = histograms
        self.probe_data = probe_data
        self.timestep_layers = (None if timestep_layers is None
                                else list(timestep_layers))
        self._timesteps = None
        self._timestep_info = []
        self._gate_layers = []
        self._probe_batch_list = None
        if probe_data is not None:
            self._probe_batch_list = probe_batching.probe_batches(
                probe_data, self.probe_batch_size, self.probe_batches)
        self._capture = None
        self._probe = None
        self._windows = {}
        self._window_index = 0  # step windows ended by this callback
        self._window_start = 0
        self._fit_begun = False
        self._epoch_start_step = 0
        self._findings = monitor.FindingsMonitor(self.gradient_window)
        self._chief = True  # this process writes (`distribution.is_chief`)
        self._batch_writer = writer.BatchWriter()
        # per source: (its `SourceWindows`, model, display names,
        # `writer.describe`)
        self._descriptions = {}
        self._state_writer = resume.StateWriter()

    # -- lifecycle ---------------------------------------------------------

    @property
    def _sources(self):
        return ("training", "probe") if self.source == "both" else (self.source,)

    def set_model(self, model):
        # Only the chief writes (several processes run the same fit).
        if distribution.is_chief():
            super().set_model(model)
        else:
            self._model = model

    def on_train_begin(self, logs=None):
        model = self.model
        distribution.check_distribution()
        self._chief = distribution.is_chief()
        if self.stop_on and distribution.process_count() > 1:
            raise ValueError(
                "`stop_on` needs a single process: every process of a "
                "multi-process fit would have to stop at the same step. "
                f"Received: stop_on={self.stop_on!r} with "
                f"{distribution.process_count()} processes")
        capture_class, probe_class, _ = capture.for_backend(
            keras.backend.backend())
        if "probe" in self._sources and self._chief:
            self._probe = probe_class(model, self._probe_batch_list)
            self._check_probe_fits(model)
        if "training" in self._sources:
            if getattr(model, "optimizer", None) is None:
                raise ValueError(
                    "source='training' needs a compiled model with an "
                    "optimizer. Received: a model with optimizer=None")
            self._capture = capture_class.for_model(model)
            self._capture.attach(steps_per_epoch=(self.params or {}).get(
                "steps"))
            self._guard_train_function(model)
        if self._chief:
            self._prepare_recurrent(model)
            super().on_train_begin(logs)
            if "training" in self._sources and not self._state_is_current():
                variables, groups = self._source_variables("training")
                window.prepare(variables, *self._window_settings(variables),
                               groups=groups)
        self._fit_begun = False

    def _prepare_recurrent(self, model):
        """Finds the layers for timestep and per-gate gradients."""
        self._gate_layers = [
            (layer, recurrent.recurrent_kind(layer),
             recurrent.gate_weights(layer))
            for layer in recurrent.find_layers(model, None)
            if recurrent.recurrent_kind(layer)]
        layers = recurrent.find_layers(model, self.timestep_layers)
        self._timesteps, self._timestep_info = None, []
        if not layers:
            return
        if self._probe_batch_list is None:
            warnings.warn(
                f"GradientTensorBoard: the model has recurrent layers "
                f"({', '.join(layer.name for layer in layers)}) but no "
                "probe_data, so their gradients per timestep are not "
                "recorded. Pass probe_data=(x, y) (a few samples are enough) "
                "to record them, or timestep_layers=[] to silence this.",
                stacklevel=2)
            return
        samples = probe_batching.first_samples(self._probe_batch_list,
                                               self.timestep_samples)
        timestep_class = capture.for_backend(keras.backend.backend())[2]
        self._timesteps = timestep_class(model, layers, samples)
        self._timestep_info = [recurrent.describe(layer) for layer in layers]
        try:
            self._timesteps.compute()
        except Exception as error:
            raise ValueError(
                f"Cannot compute timestep gradients of layers "
                f"{[layer.name for layer in layers]!r} on `probe_data`: "
                f"{error}. Received: timestep_layers="
                f"{self.timestep_layers!r}") from error

    def _check_probe_fits(self, model):
        try:
            self._probe.compute(model.trainable_variables)
        except Exception as error:  # any failure means the data do not fit
            shapes = tf.nest.map_structure(
                lambda a: None if a is None else tuple(np.shape(a)),
                tuple(self._probe_batch_list[0]))
            raise ValueError(
                f"`probe_data` does not fit the model: {error}. Received: "
                f"probe_data with batch shapes {shapes}") from error

    def _guard_train_function(self, model):
        """Undoes the optimizer patch if a training step raises.

        Keras does not call ``on_train_end`` when ``fit`` raises; wrapping
        the train function is the one place that sees the exception. The
        end of a dataset of unknown length (``StopIteration``,
        ``OutOfRangeError``) is how Keras ends such an epoch: not an error.
        """
        compiled = model.train_function
        capture_ = self._capture

        @functools.wraps(compiled)
        def train_function(*args, **kwargs):
            try:
                return compiled(*args, **kwargs)
            except (StopIteration, tf.errors.OutOfRangeError):
                raise
            except BaseException:
                capture_.detach()
                raise

        model.train_function = train_function

    def on_train_end(self, logs=None):
        try:
            if self._step_windows and self._optimizer_step() > (
                    self._window_start):
                # the last, partial window: users expect to see it
                self._end_step_window()
        finally:
            try:
                if self._capture is not None:
                    self._capture.detach()
                self._warn_state_error(self._state_writer.wait())
            finally:
                if self._chief:
                    super().on_train_end(logs)

    # Keras's TensorBoard writes in these: only on the chief.
    def on_train_batch_begin(self, batch, logs=None):
        if self._chief:
            super().on_train_batch_begin(batch, logs)

    def on_test_begin(self, logs=None):
        if self._chief:
            super().on_test_begin(logs)

    def on_test_end(self, logs=None):
        if self._chief:
            super().on_test_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        if self._chief:
            super().on_epoch_begin(epoch, logs)
        first = not self._fit_begun
        self._fit_begun = True
        # Step windows begin with the fit's first epoch: by then every
        # callback's on_train_begin ran (BackupAndRestore has restored the
        # optimizer's step).
        if first or not self._step_windows:
            self._begin_window()
        if first:
            self._guarded(self._resume, epoch)
        if self._step_windows:
            self._epoch_start_step = self._optimizer_step()

    def on_epoch_end(self, epoch, logs=None):
        if not self._chief:
            return
        super().on_epoch_end(epoch, logs)
        if not self._step_windows:
            self._guarded(self._log_gradients, epoch, epoch)
        if self.resume_state:
            self._guarded(self._save_state, epoch)

    def on_train_batch_end(self, batch, logs=None):
        if self._chief:
            super().on_train_batch_end(batch, logs)
        if not self._step_windows:
            return
        # At most batch + 1 optimizer steps were taken this epoch, so the
        # window cannot have ended before that bound reaches it; only then
        # is the step counter read (a device read, which would synchronise
        # every step on an accelerator).
        bound = self._epoch_start_step + batch + 1
        if (bound - self._window_start >= self.gradient_window
                and self._optimizer_step() - self._window_start
                >= self.gradient_window):
            self._guarded(self._end_step_window)

    # -- windows -----------------------------------------------------------

    @property
    def _step_windows(self):
        return self.gradient_window != "epoch"

    def _optimizer_step(self):
        # `self.model` brings the JAX state back to the model's variables;
        # with gradient accumulation `iterations` is a tensor (the updates)
        iterations = self.model.optimizer.iterations
        return int(keras.ops.convert_to_numpy(
            getattr(iterations, "value", iterations)))

    def _begin_window(self):
        if self._capture is not None and "training" in self._sources:
            self._capture.begin_window()
        self._window_start = self._optimizer_step()

    def _end_step_window(self):
        """Records the window that ends now, at the global optimizer step."""
        self._log_gradients(self._window_index, self._optimizer_step())
        self._window_index += 1
        self._begin_window()

    def _guarded(self, function, *args):
        """Undoes the optimizer patch if the window's work raises."""
        try:
            function(*args)
        except BaseException:
            if self._capture is not None:
                self._capture.detach()
            raise

    def _should_log(self, index):
        return index % self.gradient_freq == 0

    def _log_gradients(self, index, step):
        """Ends window ``index`` (epoch or step window) and writes it at
        summary step ``step`` if it is logged (on the chief; another
        process only starts its next window)."""
        if not self._chief:
            return
        # the last state save reads the window state, which this window
        # end replaces (on JAX, in place)
        self._warn_state_error(self._state_writer.wait())
        records = []
        if "training" in self._sources:
            records.append(self._training_record(index))
        if "probe" in self._sources and self._should_log(index):
            records.append(self._probe_record())
        records = [r for r in records if r is not None]
        if not records or not self._should_log(index):
            return
        batch = writer.WindowBatch(window=self.gradient_window)
        for record in records:
            self._write_record(batch, record, step)
        if self._timesteps is not None:
            self._write_timesteps(batch)
        self._report_findings(batch)
        self._batch_writer.write(self._train_writer, batch, step)
        self._train_writer.flush()

    # -- findings ------------------------------------------------------------

    def _report_findings(self, batch):
        """Reports each new finding once: `warnings.warn` for warnings and
        errors, the Text tab for all; stops training on `stop_on` kinds."""
        found, new = self._findings.check()
        if not new:
            return
        findings_table.write_findings(
            batch, found, "epoch" if not self._step_windows else "step")
        for finding in new:
            if findings.severity_rank(finding.severity) >= (
                    findings.severity_rank("warning")):
                warnings.warn(f"GradientTensorBoard: {finding.severity}: "
                              f"{finding.message}", stacklevel=2)
        stopping = [f for f in new if f.kind in self.stop_on]
        if stopping:
            self.model.stop_training = True
            warnings.warn(
                f"GradientTensorBoard: stopping training (stop_on="
                f"{self.stop_on!r}) on a {stopping[0].kind} finding: "
                f"{stopping[0].message}", stacklevel=2)

    # -- resume ------------------------------------------------------------

    @property
    def _state_directory(self):
        return os.path.join(self._log_write_dir, resume.STATE_DIRECTORY)

    def _source_variables(self, source):
        if source == "training":
            return self._capture.variables, self._capture.groups
        return list(self.model.trainable_variables), None

    def _state_is_current(self):
        """Whether this callback holds state of the model being trained (a
        later `fit` of the same model continues it in memory)."""
        return any(
            self._windows.get(source) is not None
            and self._windows[source].key == tuple(
                id(v) for v in self._source_variables(source)[0])
            for source in self._sources)

    def _variable_signature(self, variables):
        return {"names": _unique_names(variables, self.model.name),
                "shapes": [[int(d) for d in v.shape] for v in variables]}

    def _save_state(self, epoch):
        """Writes the state a resume at ``epoch + 1`` continues from."""
        meta = resume.run_meta(
            self._optimizer_step(), self.gradient_window, self._window_index,
            self._window_start,
            {source: self._variable_signature(windows.variables)
             for source, windows in self._windows.items()})
        self._warn_state_error(self._state_writer.submit(
            self._state_directory, epoch, meta,
            resume.run_arrays(self._windows, self._capture,
                              self._step_windows)))

    def _warn_state_error(self, error):
        """The logs are complete without the state; only a resume would
        miss it: a failed write is a warning."""
        if error is not None:
            warnings.warn(
                f"GradientTensorBoard: cannot write the gradient state to "
                f"{self._state_directory} ({error}); a resumed run would "
                "restart its accumulated series.", stacklevel=2)

    def _resume(self, epoch):
        """At a fit's first epoch: unless this callback holds the model's
        state (a later fit continues it), starts the run's state anew and
        continues the state saved at the end of the epoch before, if any."""
        if self._state_is_current():
            return
        if self._capture is not None:
            self._capture.reset_run()
        if not self.resume_state or not self._chief:
            return
        # a write left running by a fit that raised
        self._warn_state_error(self._state_writer.wait())
        directory = self._state_directory
        if epoch == 0:
            resume.clear(directory)  # a new run in this log directory
            return
        try:
            loaded = resume.load(directory, epoch - 1)
            if loaded is None:
                raise ValueError(f"no gradient state for epoch {epoch - 1} "
                                 f"in {directory}")
            self._restore(*loaded)
        except ValueError as error:
            self._windows = {}
            warnings.warn(
                f"GradientTensorBoard: the fit resumes at epoch {epoch} but "
                f"the accumulated gradient state cannot be continued "
                f"({error}); the accumulated series restart from zero at "
                f"epoch {epoch}.", stacklevel=2)

    def _restore(self, meta, arrays):
        def signature_of(source):
            variables, groups = self._source_variables(source)
            return variables, groups, self._variable_signature(variables)

        counters = resume.restore_run(
            meta, arrays, self.gradient_window, self._sources, signature_of,
            self._source_windows, self._capture)
        if counters is None:
            return
        self._window_index, self._window_start, saved_step = counters
        if self._optimizer_step() != saved_step:
            warnings.warn(
                f"GradientTensorBoard: the gradient state was saved at "
                f"optimizer step {saved_step}, the resumed optimizer is at "
                f"step {self._optimizer_step()}; step windows continue from "
                "the saved step (restore the optimizer with the weights, as "
                "BackupAndRestore and model.save do).", stacklevel=2)

    def _source_windows(self, source, variables, groups=None):
        """The accumulated state of a source, created for these variables.

        Accumulation starts with the callback: a second `fit` with the same
        callback continues it; other variables (a new model) start anew.
        """
        state = self._windows.get(source)
        if state is None or state.key != tuple(id(v) for v in variables):
            self._findings.forget(source)  # findings of other variables
            state = self._windows[source] = window.SourceWindows(
                source, variables, *self._window_settings(variables),
                groups=groups)
        return state

    def _window_settings(self, variables):
        """`SourceWindows`' arguments after the variables: heatmap cells,
        encoding, histogram buckets, fused gates per variable index."""
        gate_counts = {}
        by_id = {id(v): i for i, v in enumerate(variables)}
        for _, kind, weights in self._gate_layers:
            for _, _, variable in weights:
                if id(variable) in by_id:
                    gate_counts[by_id[id(variable)]] = len(gates.GATES[kind])
        return (self.heatmap_cells, self.heatmap_encoding,
                self.histogram_buckets if self.histograms else 0,
                gate_counts)

    def _training_record(self, index):
        windows = self._source_windows("training", self._capture.variables,
                                       self._capture.groups)
        logged = self._should_log(index)
        record = windows.end_window(
            self._capture.stacked_window_sums(), self._capture.window_scalars,
            record=logged,
            first_nonfinite=self._capture.first_nonfinite_steps()
            if logged else None)
        if record is not None:
            record.step_table, record.skipped_steps = (
                self._capture.read_steps())
        return record

    def _probe_record(self):
        variables = list(self.model.trainable_variables)
        gradients = self._probe.compute(variables)
        windows = self._source_windows("probe", variables)
        return windows.end_window(windows.stack(gradients),
                                  probe_batches=len(self._probe.batches))

    def _write_record(self, batch, record, step):
        windows = self._windows[record.source]
        variables = windows.variables
        # names and shapes once per source's windows (a new set of
        # variables makes new windows) and model
        cached = self._descriptions.get(record.source)
        if cached is None or cached[0] is not windows or (
                cached[1] is not self.model):
            names = _unique_names(variables, self.model.name)
            cached = self._descriptions[record.source] = (
                windows, self.model, names,
                writer.describe(variables, names))
        _, _, names, described = cached
        _, global_values = writer.write_record(
            batch, record, variables, names, self.heatmap_encoding,
            self._gate_layers, described)
        self._findings.remember(record.source, step, described,
                                record.stats_matrix, global_values,
                                record.step_table)

    def _write_timesteps(self, batch):
        timesteps.write_timestep_gradients(
            batch, self._timestep_info, self._timesteps.compute(),
            self.timestep_cells, self.timestep_channels)
