"""Recurrent layers: their timestep gradients, timestep norms and gates.

Groups a run's ``timesteps``, ``timestep_norms`` and ``gates`` series by
layer, in the model's order, and checks and encodes their tensors for the
``/timestep_layers``, ``/timesteps``, ``/gates`` and ``/gate_heatmap``
bodies of docs/API.md. The functions take the plain values a data provider
returns, so each one can be tested on hand-made input; `Handler` serves the
four routes with them.
"""

import numpy as np
from tensorboard import errors

from tb_gradients import json_values
from tb_gradients.format import decoding
from tb_gradients.format import gates as gates_format
from tb_gradients.format import metadata
from tb_gradients.format import timesteps as timesteps_format
from tb_gradients.plugin import cache as plugin_cache
from tb_gradients.plugin import handler
from tb_gradients.plugin import listing as plugin_listing
from tb_gradients.plugin import reading
from tb_gradients.plugin import series as plugin_series

# -- recurrent layers ---------------------------------------------------------


# Fields of a ``timesteps`` series' content describing the layer (from
# `capture.recurrent.describe` and `format.timesteps.timestep_view`),
# returned as they are.
TIMESTEP_FIELDS = (
    "class",
    "inner_class",
    "return_sequences",
    "bidirectional",
    "merge_mode",
    "direction_count",
    "direction_names",
    "direction_ranges",
    "samples",
    "timesteps",
    "channels",
    "time_block",
    "channel_block",
)


# Timestep gradients need probe samples: the writer only has this source.
TIMESTEP_SOURCE = "probe"


def recurrent_layers(parsed):
    """The recurrent-layer series of one run, grouped by layer.

    Args:
      parsed: Output of `parse_listing` for one run.

    Returns:
      ``{layer: {"timesteps": tag or None, "timestep_norms": tag or None,
      "content": content of the timesteps series or None, "gates":
      {source: tag}, "recurrent_kind": str or None}}`` for every layer
      with a ``timesteps`` (probe source) or a ``gates`` series. Series
      whose ``layer`` field is not a string are left out.
    """
    layers = {}
    for tag, content in sorted(parsed.items()):
        kind = content["kind"]
        layer = content.get("layer")
        if not isinstance(layer, str) or kind not in (
                metadata.KIND_TIMESTEPS, metadata.KIND_TIMESTEP_NORMS,
                metadata.KIND_GATES):
            continue
        if kind != metadata.KIND_GATES and \
                content["source"] != TIMESTEP_SOURCE:
            continue
        entry = layers.setdefault(layer, {
            "timesteps": None, "timestep_norms": None, "content": None,
            "gates": {}, "recurrent_kind": None})
        if kind == metadata.KIND_TIMESTEPS:
            entry["timesteps"], entry["content"] = tag, content
        elif kind == metadata.KIND_TIMESTEP_NORMS:
            entry["timestep_norms"] = tag
        else:
            entry["gates"][content["source"]] = tag
            if isinstance(content.get("recurrent_kind"), str):
                entry["recurrent_kind"] = content["recurrent_kind"]
    return {layer: entry for layer, entry in layers.items()
            if entry["timesteps"] is not None or entry["gates"]}


def layer_order(parsed, layers):
    """``layers`` in the order they appear in the model.

    The series carry no layer index, but every variable's statistics have
    its position in the model's trainable variables, and a variable's name
    starts with its top-level layer's name (``encoder/lstm_cell/kernel``).
    A layer comes at the smallest index of its variables; layers without
    variables (e.g. a `Masking` named in ``timestep_layers``) come last,
    alphabetically.
    """
    first = {}
    for source in metadata.SOURCES:
        for entry in plugin_listing.variable_entries(parsed, source):
            top = entry["name"].split("/", 1)[0]
            first[top] = min(first.get(top, entry["index"]), entry["index"])
    return sorted(layers, key=lambda layer: (
        layer not in first, first.get(layer, 0), layer))


def timestep_description(content):
    """The layer description fields of a ``timesteps`` content.

    A field the content lacks (or a layer with only ``gates`` series,
    ``content=None``) is ``None``.
    """
    content = content or {}
    return {field: content.get(field) for field in TIMESTEP_FIELDS}


def timestep_values(tensor):
    """The stored ``(samples, T', C')`` or ``(samples, C')`` gradient, as
    JSON.

    Raises:
      format.decoding.ReadError: For any other rank or dtype
        (`format.timesteps.decode_timesteps`).
    """
    return json_values.float32_json(timesteps_format.decode_timesteps(tensor))


def timestep_norms(tensor, values_shape=None):
    """``(l2, valid)`` planes of a stored ``(2, samples, T')`` norms tensor.

    Args:
      tensor: The ``timestep_norms`` tensor of one epoch.
      values_shape: Shape of the same epoch's timesteps tensor, if known:
        the norms must have its samples and timesteps.

    Raises:
      format.decoding.ReadError: When the shapes do not match the format
        (`format.timesteps.decode_timestep_norms`).
    """
    tensor = timesteps_format.decode_timestep_norms(
        tensor, values_shape).astype(np.float64, copy=False)
    channels = list(timesteps_format.TIMESTEP_NORM_CHANNELS)
    return tensor[channels.index("l2")], tensor[channels.index("valid")]


def epoch_l2(norms_by_epoch):
    """Per-timestep summaries over the samples of every epoch's norms.

    Only entries with ``valid > 0`` (not entirely masked) count. The
    figures are computed in float64, unweighted by the valid fraction; a
    non-finite norm makes its timestep's figures non-finite (``None``), and
    so does having no valid sample. ``std`` is the population standard
    deviation (``ddof=0``).

    Args:
      norms_by_epoch: ``{epoch: stored (2, samples, T') tensor}``.

    Returns:
      `JSONText` of ``{"epochs": [...], "mean", "std", "min", "max":
      [[per timestep] per epoch]}``.
    """
    epochs = sorted(norms_by_epoch)
    lists = {"mean": [], "std": [], "min": [], "max": []}
    for epoch in epochs:
        with decoding.locating(step=epoch):
            l2, valid = timestep_norms(norms_by_epoch[epoch])
        counted = valid > 0
        count = counted.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counted, l2, 0.0).sum(axis=0) / count
            spread = np.where(counted, np.square(l2 - mean), 0.0)
            std = np.sqrt(spread.sum(axis=0) / count)
            low = np.where(counted, l2, np.inf).min(axis=0)
            high = np.where(counted, l2, -np.inf).max(axis=0)
        nan = np.where(counted, np.isnan(l2), False).any(axis=0)
        for name, figures in (("mean", mean), ("std", std), ("min", low),
                              ("max", high)):
            figures = np.where((count > 0) & ~nan, figures, np.nan)
            lists[name].append(json_values.float32_json(figures))
    body = {name: json_values.JSONText("[" + ",".join(parts) + "]")
            for name, parts in lists.items()}
    body["epochs"] = epochs
    return json_values.JSONText(json_values.dumps(body))


# -- gates --------------------------------------------------------------------


def gate_table(datums, content):
    """Every epoch's per-gate statistics of one layer.

    Args:
      datums: ``TensorDatum``s of one ``gates`` series.
      content: Its parsed content.

    Returns:
      ``(epochs, values)``: sorted epochs and, per epoch, the float64
      ``[row][gate][stat]`` table with ``None`` where non-finite. Of
      repeated epochs the latest recording (`plugin.series.latest_by_step`).

    Raises:
      format.decoding.ReadError: When a tensor is not ``(rows, gates,
        stats)`` as the content announces (`format.gates.decode_gates`),
        with its step.
    """
    by_epoch = {}
    for datum in plugin_series.latest_by_step(datums):
        with decoding.locating(step=int(datum.step)):
            by_epoch[int(datum.step)] = gates_format.decode_gates(
                content, datum.numpy)
    epochs = sorted(by_epoch)
    return epochs, [json_values.nested_or_none(by_epoch[epoch])
                    for epoch in epochs]


def gate_heatmap_scale(tensors):
    """The largest finite cell over every epoch and gate, or ``None``."""
    largest = None
    for tensor in tensors:
        tensor = np.asarray(tensor, dtype=np.float32)
        finite = tensor[np.isfinite(tensor)]
        if finite.size and (largest is None or finite.max() > largest):
            largest = finite.max()
    return json_values.float32_or_none(largest)


class Handler(handler.Handler):
    """The recurrent routes: ``/timestep_layers``, ``/timesteps``,
    ``/gates`` and ``/gate_heatmap``."""

    def timestep_layers(self, ctx, experiment, run):
        """The recurrent layers of one run, in model order.

        A layer is listed when it has timestep gradients (probe source) or
        per-gate statistics (any source). Its ``epochs`` are those of its
        timestep series, counted on the small ``timestep_norms`` series
        when the layer has one (the values tensor is larger by the
        channels); like `/runs`' counts they are kept while the series'
        last step and wall time are unchanged.
        """
        listing = self._data.list(ctx, experiment, runs=[run]).get(run, {})
        parsed = plugin_listing.parse_listing(listing)
        if not parsed:
            raise errors.NotFoundError("No gradient data for run %r" % (run,))
        layers = recurrent_layers(parsed)
        counted = {layer: info["timestep_norms"] or info["timesteps"]
                   for layer, info in layers.items()
                   if info["timesteps"] is not None}
        signature = plugin_cache.series_signature(listing, counted.values())
        epochs = self._data.cache.get_or_build(
            ("timestep_layers", experiment, run, signature),
            lambda: self._series_epochs(ctx, experiment, run, counted))
        entries = []
        for layer in layer_order(parsed, layers):
            info = layers[layer]
            entry = {"layer": layer}
            entry.update(
                timestep_description(info["content"]))
            entry.update({
                "recurrent_kind": info["recurrent_kind"],
                "epochs": epochs.get(layer, []),
                "has_time": info["timestep_norms"] is not None,
                "gates": {source: source in info["gates"]
                          for source in metadata.SOURCES},
            })
            entries.append(entry)
        return {"run": run, "layers": entries}

    def _series_epochs(self, ctx, experiment, run, tags):
        """``{key: sorted epochs of the series tags[key]}`` of one run."""
        if not tags:
            return {}
        data = self._data.read(ctx, experiment, runs=[run],
                          tags=sorted(set(tags.values()))).get(run, {})
        return {key: plugin_series.steps_of(data.get(tag, []))
                for key, tag in tags.items()}

    def timesteps(self, ctx, experiment, run, layer, requested=None):
        """The gradient w.r.t. one layer's output at one epoch, as gzip JSON.

        Along with the epoch's values it summarises the per-timestep norms
        of every epoch (`epoch_l2`), so the frontend can
        overlay epochs without a request per epoch. The body grows with
        samples x timesteps x channels (megabytes at the callback's
        limits) and the frontend polls it, so it is cached while both
        series are unchanged.

        Args:
          requested: A `plugin.params.RequestedStep`, or ``None`` for the
            latest record.
        """
        source = TIMESTEP_SOURCE
        tag = metadata.timesteps_tag(source, layer)
        norms_tag = metadata.timestep_norms_tag(source, layer)
        listing = self._data.list(ctx, experiment, runs=[run],
                             tags=[tag, norms_tag]).get(run, {})
        parsed = plugin_listing.parse_listing(listing)
        content = reading.of_kind(
            parsed.get(tag), metadata.KIND_TIMESTEPS,
            "No timestep gradients of layer %r for run %r" % (layer, run))
        norms_content = parsed.get(norms_tag)
        has_norms = (norms_content is not None and norms_content["kind"]
                     == metadata.KIND_TIMESTEP_NORMS)
        tags = [tag, norms_tag] if has_norms else [tag]
        key = ("timesteps", experiment, run, layer, requested,
               plugin_cache.series_signature(listing, tags))
        return self._data.cache.get_or_build(
            key, lambda: json_values.gzip_json(self._timesteps_body(
                ctx, experiment, run, layer, requested, content, tags)))

    def _timesteps_body(self, ctx, experiment, run, layer, requested,
                        content, tags):
        data = self._data.read(ctx, experiment, runs=[run],
                               tags=tags).get(run, {})
        by_epoch = plugin_series.by_step(data.get(tags[0], []))
        epoch, epochs = reading.at_step(
            by_epoch, requested, "timestep gradients of layer %r" % (layer,),
            "for run %r" % (run,))
        tensor = np.asarray(by_epoch[epoch].numpy)
        body = {"run": run, "layer": layer, "epoch": epoch, "epochs": epochs}
        body.update(timestep_description(content))
        with decoding.locating(run=run, tag=tags[0], step=epoch):
            values = timestep_values(tensor)
        body.update({"values": values,
                     "l2": None, "valid": None, "epoch_l2": None})
        norms = {}
        if len(tags) > 1:
            norms = {step: d.numpy for step, d in
                     plugin_series.by_step(data.get(tags[1], [])).items()}
        if norms and tensor.ndim == 3:
            with decoding.locating(run=run, tag=tags[1]):
                if epoch in norms:
                    with decoding.locating(step=epoch):
                        l2, valid = timestep_norms(norms[epoch],
                                                   tensor.shape)
                    body["l2"] = json_values.float32_json(l2)
                    body["valid"] = json_values.float32_json(valid)
                body["epoch_l2"] = epoch_l2(norms)
        return body

    def gates(self, ctx, experiment, run, source, layer):
        """Per-gate weight-gradient statistics of one LSTM/GRU layer."""
        tag = metadata.gates_tag(source, layer)
        missing = ("No per-gate gradients of layer %r for run %r and source "
                   "%r" % (layer, run, source))
        content, datums = self._data.series_of_kind(
            ctx, experiment, run, tag, metadata.KIND_GATES, missing)
        with decoding.locating(run=run, tag=tag):
            epochs, values = gate_table(datums, content)
            gates, names = gates_format.gate_columns(content)
        if not epochs:
            raise errors.NotFoundError(missing)
        return {
            "run": run, "source": source, "layer": layer,
            "recurrent_kind": content.get("recurrent_kind"),
            "gates": gates, "stats": names,
            "rows": gates_format.gate_rows(content),
            "epochs": epochs, "values": values,
        }

    def gate_heatmap(self, ctx, experiment, run, source, variable,
                     requested=None):
        """Pooled mean |g| of each gate of one fused recurrent weight.

        Args:
          requested: A `plugin.params.RequestedStep`, or ``None`` for the
            latest record.
        """
        tag = metadata.gate_heatmap_tag(source, variable)
        content, datums = self._data.series_of_kind(
            ctx, experiment, run, tag, metadata.KIND_GATE_HEATMAP,
            "No gate heatmap of variable %r for run %r and source %r"
            % (variable, run, source))
        by_epoch = plugin_series.by_step(datums)
        epoch, epochs = reading.at_step(
            by_epoch, requested, "gate heatmap of variable %r" % (variable,),
            "for run %r and source %r" % (run, source))
        with decoding.locating(run=run, tag=tag):
            gates, _ = gates_format.gate_columns(content)
            planes = {}
            for step, datum in by_epoch.items():
                with decoding.locating(step=step):
                    planes[step] = gates_format.decode_gate_heatmap(
                        content, datum.numpy)
        tensor = planes[epoch]
        return {
            "run": run, "source": source, "variable": variable,
            "layer": content.get("layer"),
            "recurrent_kind": content.get("recurrent_kind"),
            "gates": gates, "block": content.get("block"),
            "rows": int(tensor.shape[1]), "cols": int(tensor.shape[2]),
            "epoch": epoch, "epochs": epochs,
            "values": json_values.float32_json(
                tensor.reshape(tensor.shape[0], -1)),
            "scale": gate_heatmap_scale(planes.values()),
        }
