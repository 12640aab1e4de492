"""Gradients per timestep equal an independent tape on the layer's output.

The reference runs the trained model's layers one by one on the probe
samples, watches the chosen layer's output with a GradientTape and
differentiates the loss with respect to it.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tb_gradients import GradientTensorBoard
from tb_gradients.format import metadata

from tests import eventfiles
from tests import reference

STEPS, FEATURES, SAMPLES = 7, 3, 48
LR, BATCH, EPOCHS = 0.05, 16, 2


def data(masked=False):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(SAMPLES, STEPS, FEATURES)).astype("float32")
    if masked:
        x[0, 5:] = 0.0
        x[1, 3:] = 0.0
    y = x[:, 0, :1] * 0.5 + rng.normal(size=(SAMPLES, 1)).astype("float32") * .1
    return x, y


def reference_output_gradient(model, layer_name, x, y):
    h = tf.constant(x)
    watched = None
    with tf.GradientTape() as tape:
        for layer in model.layers:
            h = layer(h, training=False)
            if layer.name == layer_name:
                tape.watch(h)
                watched = h
        loss = tf.reduce_mean(tf.square(h - y))
    return tape.gradient(loss, watched).numpy()


MODELS = {
    "lstm": lambda: [keras.layers.LSTM(5, return_sequences=True, name="rec"),
                     keras.layers.LSTM(3, name="last")],
    "gru": lambda: [keras.layers.GRU(4, return_sequences=True, name="rec"),
                    keras.layers.GlobalAveragePooling1D()],
    "simple_rnn": lambda: [keras.layers.SimpleRNN(4, return_sequences=True,
                                                  name="rec"),
                           keras.layers.SimpleRNN(2, name="last")],
    "bidirectional_lstm": lambda: [
        keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True),
                                   name="rec"),
        keras.layers.LSTM(2, name="last")],
}


def build(body, masked=False):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((STEPS, FEATURES))]
    if masked:
        layers.append(keras.layers.Masking(0.0, name="mask"))
    return keras.Sequential(layers + body + [keras.layers.Dense(1,
                                                                name="head")])


def train(tmp_path, body, masked=False, samples=8, **kwargs):
    """Trains ``body`` (layers, or a model from `build`) for 2 epochs of 3
    steps with the callback."""
    x, y = data(masked)
    model = body if isinstance(body, keras.Model) else build(body, masked)
    model.compile(keras.optimizers.SGD(LR), "mse")
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, shuffle=False,
              callbacks=[GradientTensorBoard(
                  str(tmp_path), probe_data=(x[:samples], y[:samples]),
                  timestep_samples=samples, **kwargs)])
    return model, x[:samples], y[:samples], eventfiles.load(tmp_path / "train")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_timestep_gradient_matches_tape_on_layer_output(tmp_path, name):
    model, x, y, series = train(tmp_path, MODELS[name]())
    for layer in ("rec", "last"):
        tag = metadata.timesteps_tag("probe", layer)
        if layer == "last" and tag not in series:
            continue
        got = series[tag][1]
        want = reference_output_gradient(model, layer, x, y)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
        if want.ndim == 3:
            norms = series[metadata.timestep_norms_tag("probe", layer)][1]
            np.testing.assert_allclose(
                norms[0], np.sqrt((want ** 2).sum(axis=2)), rtol=1e-4,
                atol=1e-8)
            np.testing.assert_array_equal(norms[1], 1.0)


def test_return_sequences_false_has_no_time_axis(tmp_path):
    _, _, _, series = train(tmp_path, MODELS["lstm"]())
    assert series[metadata.timesteps_tag("probe", "last")][1].shape == (8, 3)
    assert metadata.timestep_norms_tag("probe", "last") not in series


def test_bidirectional_records_its_halves(tmp_path):
    _, _, _, series = train(tmp_path, MODELS["bidirectional_lstm"]())
    tag = metadata.timesteps_tag("probe", "rec")
    content = metadata.parse_plugin_metadata(
        series["__metadata__"][tag].plugin_data.content)
    assert content["direction_names"] == ["forward", "backward"]
    assert content["direction_ranges"] == [[0, 3], [3, 6]]


def test_masked_timesteps_are_recorded_as_masked(tmp_path):
    model, x, y, series = train(tmp_path, MODELS["lstm"](), masked=True)
    norms = series[metadata.timestep_norms_tag("probe", "rec")][1]
    valid = norms[1]
    assert valid[0].tolist() == [1, 1, 1, 1, 1, 0, 0]
    assert valid[1].tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert valid[2:].min() == 1
    got = series[metadata.timesteps_tag("probe", "rec")][1]
    want = reference_output_gradient(model, "rec", x, y)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)


def test_long_sequences_are_pooled_with_the_pooling_recorded(tmp_path):
    model, x, y, series = train(tmp_path, MODELS["gru"](), timestep_cells=3,
                                timestep_channels=2)
    tag = metadata.timesteps_tag("probe", "rec")
    got = series[tag][1]
    content = metadata.parse_plugin_metadata(
        series["__metadata__"][tag].plugin_data.content)
    assert (content["time_block"], content["channel_block"]) == (3, 2)
    assert got.shape == (8, 3, 2)  # ceil(7/3) timesteps, ceil(4/2) channels
    want = reference_output_gradient(model, "rec", x, y)
    np.testing.assert_allclose(got[:, 0, 0], want[:, 0:3, 0:2].mean((1, 2)),
                               rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(got[:, 2, 1], want[:, 6:7, 2:4].mean((1, 2)),
                               rtol=1e-4, atol=1e-8)


def test_per_gate_weight_gradients(tmp_path):
    model, x, y, series = train(tmp_path, MODELS["lstm"](), source="probe")
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x, training=False) - y))
    grads = tape.gradient(loss, model.trainable_variables)
    kernel = [g for g, v in zip(grads, model.trainable_variables)
              if v.path.endswith("rec/lstm_cell/kernel")][0].numpy()
    table = series[metadata.gates_tag("probe", "rec")][1]
    content = metadata.parse_plugin_metadata(
        series["__metadata__"][metadata.gates_tag("probe", "rec")]
        .plugin_data.content)
    assert content["gates"] == ["input", "forget", "cell", "output"]
    row = [r["role"] for r in content["rows"]].index("kernel")
    for gate in range(4):
        part = kernel[:, gate * 5:(gate + 1) * 5]
        assert table[row, gate, 0] == pytest.approx(
            np.sqrt((part ** 2).sum()), rel=1e-4)
        assert table[row, gate, 2] == pytest.approx(np.abs(part).max(),
                                                    rel=1e-4)


def gate_slices(gradient, gates):
    """Each gate's slice of a fused weight's gradient (Keras's order on the
    last axis), as the 2-D matrix view of docs/STATISTICS.md."""
    units = gradient.shape[-1] // gates
    return [reference.matrix_view(gradient[..., gate * units:
                                           (gate + 1) * units])
            for gate in range(gates)]


# At most 32 / gates cells per gate's heatmap: the LSTM's kernel and
# recurrent kernel slices ((3, 5), (5, 5)) and the GRU's are pooled in
# blocks with uneven edges.
GATE_HEATMAP_CELLS = 32


@pytest.mark.parametrize("name, gates", [("lstm", 4), ("gru", 3)])
def test_gate_figures_and_heatmaps_equal_a_tape_reference(tmp_path, name,
                                                          gates):
    """Every gate figure and gate heatmap of both sources, from a plain
    tape training loop and the probe gradient at each epoch's end."""
    model = build(MODELS[name]())
    twin = reference.clone_with_weights(model)
    _, probe_x, probe_y, series = train(tmp_path, model, source="both",
                                        heatmap_cells=GATE_HEATMAP_CELLS)
    x, y = data()
    loss_fn = keras.losses.MeanSquaredError(reduction=None)
    paths = [v.path for v in twin.trainable_variables]
    wanted = {"training": [], "probe": []}
    for _ in range(EPOCHS):
        (steps,) = reference.tape_training(twin, loss_fn, x, y, BATCH, 1, LR)
        wanted["training"].append([sum(step[i] for step in steps)
                                   for i in range(len(paths))])
        wanted["probe"].append(reference.probe_gradient(twin, loss_fn,
                                                        probe_x, probe_y))
    pooled = 0
    for source, epochs in wanted.items():
        tag = metadata.gates_tag(source, "rec")
        content = metadata.parse_plugin_metadata(
            series["__metadata__"][tag].plugin_data.content)
        assert len(content["gates"]) == gates
        assert content["stats"] == ["l2", "mean_abs", "max_abs"]
        assert sorted(r["role"] for r in content["rows"]) == [
            "bias", "kernel", "recurrent_kernel"]
        for epoch, gradients in enumerate(epochs):
            table = series[tag][epoch]
            assert table.shape == (3, gates, 3)
            for row, entry in enumerate(content["rows"]):
                index = [i for i, path in enumerate(paths)
                         if path.endswith(entry["variable"])]
                assert len(index) == 1, (entry, paths)
                slices = gate_slices(gradients[index[0]], gates)
                want = [[np.sqrt((s ** 2).sum()), np.abs(s).mean(),
                         np.abs(s).max()] for s in slices]
                np.testing.assert_allclose(
                    table[row], want, rtol=1e-4, atol=1e-9,
                    err_msg=f"{source} epoch {epoch} {entry['variable']}")
                heat_tag = metadata.gate_heatmap_tag(source,
                                                     entry["variable"])
                block = metadata.parse_plugin_metadata(
                    series["__metadata__"][heat_tag].plugin_data.content
                )["block"]
                rows, cols = slices[0].shape
                if rows * cols > GATE_HEATMAP_CELLS // gates:
                    assert block[0] * block[1] > 1
                    pooled += 1
                heat = series[heat_tag][epoch]
                np.testing.assert_allclose(
                    heat, [reference.pooled_blocks(np.abs(s), block, np.mean)
                           for s in slices],
                    rtol=1e-4, atol=1e-9,
                    err_msg=f"{source} epoch {epoch} gate heatmap "
                            f"{entry['variable']}")
    assert pooled >= 2 * EPOCHS * 2  # kernel and recurrent kernel, pooled


def test_recurrent_layers_without_probe_data_warn_and_train(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = data()
    model = keras.Sequential([keras.Input((STEPS, FEATURES)),
                              keras.layers.LSTM(3), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    with pytest.warns(UserWarning, match="probe_data"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[GradientTensorBoard(str(tmp_path))])
    series = eventfiles.load(tmp_path / "train")
    assert metadata.scalar_tag("training", "norm") in series


def test_unknown_timestep_layer_is_a_clear_error(tmp_path):
    x, y = data()
    model = keras.Sequential([keras.Input((STEPS, FEATURES)),
                              keras.layers.Conv1D(2, 3, name="conv"),
                              keras.layers.Flatten(), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    callback = GradientTensorBoard(str(tmp_path), probe_data=(x, y),
                                   timestep_layers=["conv", "nope"])
    with pytest.raises(ValueError, match="'nope'"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])


def test_named_conv1d_layer_is_recorded(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = data()
    model = keras.Sequential([keras.Input((STEPS, FEATURES)),
                              keras.layers.Conv1D(2, 3, name="conv"),
                              keras.layers.Flatten(name="flat"),
                              keras.layers.Dense(1, name="head")])
    model.compile("sgd", "mse")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[GradientTensorBoard(
        str(tmp_path), probe_data=(x[:8], y[:8]), timestep_samples=8,
        timestep_layers=["conv"])])
    series = eventfiles.load(tmp_path / "train")
    got = series[metadata.timesteps_tag("probe", "conv")][0]
    want = reference_output_gradient(model, "conv", x[:8], y[:8])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
