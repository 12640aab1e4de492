"""Gradients with respect to recurrent layers' outputs, per timestep.

A gradient that reaches only the last timesteps of a recurrent layer's output
means the layer is not learning long-range dependencies. This module finds
the layers to watch, builds a functional "tap" model that returns their
outputs next to the model's, and computes d(loss)/d(output) for all of them
in one GradientTape pass on a few probe samples. It also knows how Keras
lays out LSTM and GRU gates, for the per-gate weight-gradient breakdown.
"""

import keras
import numpy as np
import tensorflow as tf
from keras.src import backend as keras_backend

from tb_gradients import stats

# Layer types recorded by default (SimpleRNN, LSTM, GRU and ConvLSTM*D are
# all `keras.layers.RNN`s).
RECURRENT_TYPES = (keras.layers.RNN, keras.layers.Bidirectional)


def is_recurrent(layer):
    return isinstance(layer, RECURRENT_TYPES)


def find_layers(model, requested=None):
    """The layers whose output gradients are recorded.

    Args:
      model: a built Keras model.
      requested: ``None`` for every recurrent layer of the model, else a
        list of layer names or layer objects (added to the recurrent ones);
        an empty list records none.

    Raises:
      ValueError: a requested name or layer is not in the model.
    """
    layers = list(getattr(model, "layers", []))
    if requested is not None and len(requested) == 0:
        return []
    found = [layer for layer in layers if is_recurrent(layer)]
    by_name = {layer.name: layer for layer in layers}
    for item in requested or ():
        layer = by_name.get(item) if isinstance(item, str) else item
        if layer is None or all(layer is not other for other in layers):
            raise ValueError(
                "`timestep_layers` names a layer that is not in the model. "
                f"Received: timestep_layers item {item!r}; the model's layers "
                f"are {sorted(by_name)}")
        if all(layer is not other for other in found):
            found.append(layer)
    return found


def recurrent_kind(layer):
    """``"LSTM"``, ``"GRU"`` or None: the gate layout of a layer's weights."""
    inner = layer.forward_layer if isinstance(
        layer, keras.layers.Bidirectional) else layer
    for kind in ("LSTM", "GRU"):
        if isinstance(inner, getattr(keras.layers, kind)):
            return kind
    return None


def directions(layer):
    """``[(direction name, RNN layer)]``: two for `Bidirectional`."""
    if isinstance(layer, keras.layers.Bidirectional):
        return [("forward", layer.forward_layer),
                ("backward", layer.backward_layer)]
    return [("forward", layer)]


def gate_weights(layer):
    """``[(direction, role, variable)]`` of an LSTM/GRU layer's fused weights."""
    out = []
    for direction, rnn in directions(layer):
        cell = getattr(rnn, "cell", None)
        for role in ("kernel", "recurrent_kernel", "bias"):
            variable = getattr(cell, role, None)
            if variable is not None and variable.trainable:
                out.append((direction, role, variable))
    return out


def describe(layer):
    """What the frontend needs to draw a layer's timestep gradient."""
    concatenated = (isinstance(layer, keras.layers.Bidirectional)
                    and layer.merge_mode == "concat")
    merge = getattr(layer, "merge_mode", None)
    return {
        "layer": layer.name,
        "class": type(layer).__name__,
        "inner_class": type(directions(layer)[0][1]).__name__,
        "return_sequences": bool(getattr(
            directions(layer)[0][1], "return_sequences", True)),
        "bidirectional": isinstance(layer, keras.layers.Bidirectional),
        "merge_mode": merge,
        "direction_count": 2 if concatenated else 1,
        "direction_names": (["forward", "backward"] if concatenated
                            else (["merged"] if merge else ["forward"])),
    }


class TimestepGradients:
    """d(loss)/d(output) of several layers in one GradientTape pass."""

    def __init__(self, model, layers, samples):
        """Builds the tap model.

        Args:
          model: a functional or Sequential Keras model.
          layers: from `find_layers`.
          samples: ``(x, y, sample_weight)`` of the probe samples to use.

        Raises:
          ValueError: the model has no symbolic graph to tap (a subclassed
            model), or a layer is used more than once.
        """
        self._model = model
        self.layers = layers
        self._samples = samples
        outputs = list(getattr(model, "outputs", None) or [])
        if not outputs:
            raise ValueError(
                "Timestep gradients need a functional or Sequential model "
                "(a subclassed model has no graph of layer outputs to tap). "
                f"Received: a {type(model).__name__}; pass "
                "timestep_layers=[] to turn them off")
        taps = []
        for layer in layers:
            try:
                taps.append(layer.output)
            except (AttributeError, ValueError) as error:
                raise ValueError(
                    f"Cannot record the output of layer {layer.name!r}: "
                    f"{error}. Received: timestep_layers item "
                    f"{layer.name!r}") from error
        self._output_count = len(outputs)
        self._tap_model = keras.Model(model.inputs, outputs + taps)
        self._function = None

    def _build(self):
        model, tap, count = self._model, self._tap_model, self._output_count

        @tf.function(reduce_retracing=True)
        def output_gradients(x, y, sample_weight):
            with tf.GradientTape() as tape:
                results = tap(x, training=False)
                y_pred = results[0] if count == 1 else results[:count]
                loss = model.compute_loss(x=x, y=y, y_pred=y_pred,
                                          sample_weight=sample_weight,
                                          training=False)
            outputs = results[count:]
            grads = tape.gradient(loss, outputs)
            masks = []
            for output in outputs:
                mask = keras_backend.get_keras_mask(output)
                masks.append(tf.zeros([0], tf.bool) if mask is None else mask)
            return grads, masks

        return output_gradients

    def compute(self):
        """``[(gradient ndarray, mask ndarray or None)]`` per layer.

        The gradient is that of the probe loss (mean over the samples used),
        so each sample's slice is 1/samples of its own loss's gradient.
        """
        if self._function is None:
            self._function = self._build()
        x, y, sample_weight = self._samples
        grads, masks = self._function(x, y, sample_weight)
        result = []
        for gradient, mask in zip(grads, masks):
            gradient = (np.zeros(1) if gradient is None
                        else np.asarray(gradient.numpy(), dtype=np.float64))
            mask = mask.numpy()
            result.append((gradient, mask if mask.size else None))
        return result


def first_samples(batches, count):
    """The first ``count`` samples of a list of probe batches."""
    taken, collected = 0, []
    for batch in batches:
        if taken >= count:
            break
        n = int(tf.shape(tf.nest.flatten(batch[0])[0])[0])
        keep = min(n, count - taken)
        collected.append(tf.nest.map_structure(
            lambda a: None if a is None else np.asarray(a)[:keep], tuple(batch)))
        taken += keep
    x = tf.nest.map_structure(lambda *a: np.concatenate(a),
                              *[c[0] for c in collected])
    y = tf.nest.map_structure(lambda *a: np.concatenate(a),
                              *[c[1] for c in collected])
    weights = None
    if len(collected[0]) > 2 and collected[0][2] is not None:
        weights = np.concatenate([c[2] for c in collected])
    return x, y, weights


def pooled_layer_gradient(layer_info, gradient, mask, max_timesteps,
                          max_channels):
    """`stats.timestep_view` with the layer's direction layout."""
    return stats.timestep_view(
        gradient, mask=mask, max_timesteps=max_timesteps,
        max_channels=max_channels, directions=layer_info["direction_count"])
