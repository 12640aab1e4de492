"""Gradients with respect to recurrent layers' outputs, per timestep.

A gradient that reaches only the last timesteps of a recurrent layer's output
means the layer is not learning long-range dependencies. This module finds
the layers to watch, builds a functional "tap" model that returns their
outputs next to the model's, and computes d(loss)/d(output) for all of them
in one GradientTape pass on a few probe samples. It also knows how Keras
lays out LSTM and GRU gates, for the per-gate weight-gradient breakdown.
"""

import keras

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
