"""The demo runs: each function trains one model into ``<logdir>/<run>``.

All data are offline: scikit-learn's bundled data sets (digits, iris,
diabetes) and generated ones (make_circles, a FordA-like series task, the
adding problem). Each experiment reproduces one seed article:

* vanishing  — "Visualizing the vanishing gradient problem": a 5-layer MLP
  on make_circles with RandomNormal(0, 1) weights, sigmoid vs tanh vs ReLU,
  plus sigmoid with Glorot initialisation.
* evolution  — "Gradient Evolution": its CNN (digits instead of MNIST), an
  MLP on iris, a regression on diabetes, a 1-D CNN on a FordA-like task,
  all with SGD.
* recurrent  — "How to visualize RNN/LSTM gradients": LSTM vs GRU vs
  SimpleRNN vs Bidirectional(LSTM) on the adding problem.
* exploding  — the forum thread's "set the learning rate too high".
* deep       — a 24-block transformer on generated tokens (389 variables),
  one block of which has its residual branches scaled by 1e-4 (as a layer
  scale initialised too small would): the gradient map and the depth
  profiles show which block no longer learns.
"""

import os

import keras
import numpy as np
from sklearn import datasets
from sklearn.preprocessing import StandardScaler

from tb_gradients import GradientTensorBoard

SEED = 13


def _callback(logdir, run, **kwargs):
    return GradientTensorBoard(log_dir=os.path.join(logdir, run), **kwargs)


def _fit(model, x, y, logdir, run, epochs, batch_size, **callback_kwargs):
    keras.utils.set_random_seed(SEED)
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0,
              shuffle=True, callbacks=[_callback(logdir, run,
                                                 **callback_kwargs)])
    return os.path.join(logdir, run)


# -- vanishing gradient ---------------------------------------------------------

def circles():
    x, y = datasets.make_circles(n_samples=1000, factor=0.5, noise=0.1,
                                 random_state=SEED)
    return x.astype("float32"), y.astype("float32")


def vanishing_mlp(activation, initializer):
    """The article's MLP: 4 hidden layers of 5 units, sigmoid output."""
    keras.utils.set_random_seed(SEED)
    layers = [keras.Input((2,))]
    for i in range(1, 5):
        layers.append(keras.layers.Dense(5, activation=activation,
                                         kernel_initializer=initializer(),
                                         name=f"dense_{i}"))
    layers.append(keras.layers.Dense(1, activation="sigmoid",
                                     kernel_initializer=initializer(),
                                     name="output"))
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.RMSprop(), "binary_crossentropy")
    return model


def vanishing(logdir, quick):
    x, y = circles()
    normal = lambda: keras.initializers.RandomNormal(0.0, 1.0, seed=SEED)  # noqa
    glorot = lambda: keras.initializers.GlorotUniform(seed=SEED)  # noqa
    epochs = 20 if quick else 100
    runs = []
    for run, activation, init in [
            ("vanishing_sigmoid", "sigmoid", normal),
            ("vanishing_tanh", "tanh", normal),
            ("vanishing_relu", "relu", normal),
            ("vanishing_sigmoid_glorot", "sigmoid", glorot)]:
        runs.append(_fit(vanishing_mlp(activation, init), x, y, logdir, run,
                         epochs, 32))
    return runs


# -- gradient evolution -----------------------------------------------------------

def digits_cnn(logdir, quick):
    """The article's MNIST CNN on scikit-learn's 8x8 digits ('same' padding)."""
    digits = datasets.load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = keras.utils.to_categorical(digits.target, 10)
    keras.utils.set_random_seed(SEED)
    glorot = lambda: keras.initializers.GlorotUniform(seed=SEED)  # noqa
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu",
                            kernel_initializer=glorot(), name="conv_1"),
        keras.layers.MaxPool2D(2),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu",
                            kernel_initializer=glorot(), name="conv_2"),
        keras.layers.MaxPool2D(2),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5, seed=SEED),
        keras.layers.Dense(10, activation="softmax",
                           kernel_initializer=glorot(), name="output"),
    ])
    model.compile(keras.optimizers.SGD(0.01), "categorical_crossentropy")
    return [_fit(model, x, y, logdir, "evolution_digits_cnn",
                 8 if quick else 30, 64, probe_data=(x[:256], y[:256]),
                 source="both")]


def iris_mlp(logdir, quick):
    iris = datasets.load_iris()
    x = StandardScaler().fit_transform(iris.data).astype("float32")
    y = keras.utils.to_categorical(iris.target, 3)
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(16, activation="relu", name="dense_1"),
        keras.layers.Dense(16, activation="relu", name="dense_2"),
        keras.layers.Dense(3, activation="softmax", name="output"),
    ])
    model.compile(keras.optimizers.SGD(0.01), "categorical_crossentropy")
    return [_fit(model, x, y, logdir, "evolution_iris_mlp",
                 20 if quick else 100, 16)]


def diabetes_regression(logdir, quick):
    diabetes = datasets.load_diabetes()
    x = StandardScaler().fit_transform(diabetes.data).astype("float32")
    y = (diabetes.target / diabetes.target.std()).astype("float32")
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential([
        keras.Input((10,)),
        keras.layers.Dense(32, activation="relu", name="dense_1"),
        keras.layers.Dense(16, activation="relu", name="dense_2"),
        keras.layers.Dense(1, name="output"),
    ])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return [_fit(model, x, y, logdir, "evolution_diabetes_regression",
                 20 if quick else 100, 32)]


def forda_like(samples=1000, length=128, seed=SEED):
    """Two classes of noisy series that differ in a short local motif."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    y = rng.integers(0, 2, samples)
    x = rng.normal(0, 0.6, (samples, length))
    x += np.sin(2 * np.pi * rng.uniform(1, 3, (samples, 1)) * t)
    centers = rng.integers(20, length - 20, samples)
    for i in range(samples):
        bump = np.exp(-0.5 * ((np.arange(length) - centers[i]) / 3.0) ** 2)
        x[i] += (2.0 if y[i] else -2.0) * bump
    return x.astype("float32")[..., None], y.astype("float32")


def forda_cnn(logdir, quick):
    x, y = forda_like()
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential([
        keras.Input((x.shape[1], 1)),
        keras.layers.Conv1D(16, 5, activation="relu", name="conv_1"),
        keras.layers.Conv1D(16, 5, activation="relu", name="conv_2"),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(1, activation="sigmoid", name="output"),
    ])
    model.compile(keras.optimizers.SGD(0.05), "binary_crossentropy")
    return [_fit(model, x, y, logdir, "evolution_forda_cnn",
                 6 if quick else 25, 32)]


def evolution(logdir, quick):
    return (digits_cnn(logdir, quick) + iris_mlp(logdir, quick)
            + diabetes_regression(logdir, quick) + forda_cnn(logdir, quick))


# -- recurrent gradients ----------------------------------------------------------

def adding_problem(samples=1200, length=40, seed=SEED):
    """The adding problem: sum the two values marked in a long sequence.

    One marker is in the first tenth of the sequence, so a model can only
    solve it if gradient flows back to the early timesteps.
    """
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 1, (samples, length))
    markers = np.zeros((samples, length))
    first = rng.integers(0, length // 10, samples)
    second = rng.integers(length // 2, length, samples)
    markers[np.arange(samples), first] = 1
    markers[np.arange(samples), second] = 1
    x = np.stack([values, markers], axis=-1).astype("float32")
    y = (values * markers).sum(axis=1, keepdims=True).astype("float32")
    return x, y


def recurrent(logdir, quick):
    x, y = adding_problem()
    epochs = 4 if quick else 15
    probe = (x[:64], y[:64])
    runs = []
    builders = [
        ("recurrent_lstm", lambda seq, name: keras.layers.LSTM(
            24, return_sequences=seq, name=name)),
        ("recurrent_gru", lambda seq, name: keras.layers.GRU(
            24, return_sequences=seq, name=name)),
        ("recurrent_simple_rnn", lambda seq, name: keras.layers.SimpleRNN(
            24, return_sequences=seq, name=name)),
        ("recurrent_bidirectional_lstm",
         lambda seq, name: keras.layers.Bidirectional(
             keras.layers.LSTM(12, return_sequences=seq), name=name)),
    ]
    for run, layer in builders:
        # A recurrent layer returning sequences feeds one that does not: the
        # tab shows a full channels x timesteps picture for the first and a
        # per-channel scatter for the second, for each cell type.
        keras.utils.set_random_seed(SEED)
        model = keras.Sequential([
            keras.Input(x.shape[1:]),
            layer(True, "sequence"),
            layer(False, "last"),
            keras.layers.Dense(1, name="output"),
        ])
        model.compile(keras.optimizers.Adam(0.005), "mse")
        runs.append(_fit(model, x, y, logdir, run, epochs, 32,
                         probe_data=probe, timestep_samples=16))
    return runs


# -- exploding gradient -----------------------------------------------------------

def exploding(logdir, quick):
    """The forum thread's advice: set the learning rate too high.

    A linear MLP on the raw diabetes targets (values up to 346) with a step
    size far beyond stability: every update overshoots, the weights and the
    gradients grow geometrically, overflow to Inf and turn into NaN within a
    few epochs, which the tab counts and marks.
    """
    x, y = raw_diabetes()
    # Full-batch steps, so that the blow-up spreads over several epochs.
    return [_fit(exploding_mlp(), x, y, logdir,
                 "exploding_high_learning_rate", 12 if quick else 20,
                 len(x))]


EXPLODING_LEARNING_RATE = 0.002


def raw_diabetes():
    """Standardised inputs, raw targets (values up to 346)."""
    diabetes = datasets.load_diabetes()
    x = StandardScaler().fit_transform(diabetes.data).astype("float32")
    return x, diabetes.target.astype("float32")[:, None]


def exploding_mlp():
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential([
        keras.Input((10,)),
        keras.layers.Dense(32, name="dense_1"),
        keras.layers.Dense(32, name="dense_2"),
        keras.layers.Dense(1, name="output"),
    ])
    model.compile(keras.optimizers.SGD(EXPLODING_LEARNING_RATE), "mse")
    return model


# -- deep models ----------------------------------------------------------------

DEEP_VOCABULARY = 16


def first_token(samples=2048, length=16, seed=SEED):
    """Random token sequences; the target is the first token (a task only
    attention can solve: the answer must travel from position 0)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, DEEP_VOCABULARY, size=(samples, length))
    return x.astype("int32"), x[:, 0].astype("int32")


class PositionEmbedding(keras.layers.Layer):
    """Adds a learned vector per position (``embeddings``, one row per
    position) to a sequence."""

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            shape=tuple(input_shape[-2:]), initializer="random_normal",
            name="embeddings")

    def call(self, x):
        return x + self.embeddings


def deep_transformer(blocks=24, width=16, heads=2, length=16,
                     damped_block=None, damping=1e-4):
    """A pre-norm transformer encoder of ``blocks`` blocks named
    ``block<i>_<part>`` (layer norms, attention, a two-layer MLP), on
    token and position embeddings, classifying the pooled sequence.

    ``damped_block``: that block's residual branches are scaled by
    ``damping``, so its weights get gradients ``damping`` times smaller.
    """
    keras.utils.set_random_seed(SEED)
    layers = keras.layers
    tokens = keras.Input((length,), dtype="int32")
    x = layers.Embedding(DEEP_VOCABULARY, width, name="token_embedding")(
        tokens)
    x = PositionEmbedding(name="position_embedding")(x)
    for i in range(blocks):
        scale = damping if i == damped_block else 1.0

        def branch(h, part, i=i, scale=scale):
            if scale == 1.0:
                return h
            return layers.Rescaling(scale, name=f"block{i}_{part}_scale")(h)

        h = layers.LayerNormalization(name=f"block{i}_ln1")(x)
        h = layers.MultiHeadAttention(heads, width // heads,
                                      name=f"block{i}_attn")(h, h)
        x = layers.Add(name=f"block{i}_add1")([x, branch(h, "attn")])
        h = layers.LayerNormalization(name=f"block{i}_ln2")(x)
        h = layers.Dense(2 * width, activation="gelu",
                         name=f"block{i}_mlp_in")(h)
        h = layers.Dense(width, name=f"block{i}_mlp_out")(h)
        x = layers.Add(name=f"block{i}_add2")([x, branch(h, "mlp")])
    x = layers.LayerNormalization(name="final_norm")(x)
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = layers.Dense(DEEP_VOCABULARY, name="head")(x)
    model = keras.Model(tokens, outputs, name="deep_transformer")
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def deep(logdir, quick):
    """A 24-block transformer whose block 16 barely learns, recorded in
    windows of 10 steps (quick: 8 blocks, block 5)."""
    x, y = first_token(512 if quick else 2048)
    model = (deep_transformer(blocks=8, damped_block=5) if quick
             else deep_transformer(damped_block=16))
    return [_fit(model, x, y, logdir, "deep_transformer", 2 if quick else 5,
                 32, gradient_window=10, histograms=False)]


EXPERIMENTS = {
    "vanishing": vanishing,
    "evolution": evolution,
    "recurrent": recurrent,
    "exploding": exploding,
    "deep": deep,
}
