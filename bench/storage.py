"""Bytes written per epoch for a ResNet-50-sized model (about 25.6 M params).

Trains Keras's ResNet50 architecture (weights=None, nothing downloaded) on a
few random 32x32 images for several epochs with `GradientTensorBoard` and
with plain `keras.callbacks.TensorBoard`, measures the event-file growth of
each steady epoch (the one-time graph and model summary are left out) and
reports ours minus the baseline.

Usage: python bench/storage.py [--epochs 3] [--encoding uint8]
"""

import argparse
import glob
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from bench import machine  # noqa: E402
from tb_gradients import GradientTensorBoard  # noqa: E402


def directory_bytes(path):
    return sum(os.path.getsize(f) for f in glob.glob(
        os.path.join(path, "**", "*"), recursive=True) if os.path.isfile(f))


class SizeAfterEpoch(keras.callbacks.Callback):
    """Size of the logdir after every other callback's epoch-end writes."""

    def __init__(self, logdir):
        super().__init__()
        self.logdir = logdir
        self.sizes = []

    def on_epoch_end(self, epoch, logs=None):
        self.sizes.append(directory_bytes(self.logdir))


def per_epoch_bytes(make_callback, epochs):
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3),
                                        classes=1000)
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((8, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 1000, 8)
    with tempfile.TemporaryDirectory() as logdir:
        size = SizeAfterEpoch(logdir)
        model.fit(x, y, batch_size=8, epochs=epochs, verbose=0,
                  callbacks=[make_callback(logdir), size])
    params = model.count_params()
    trainable = len(model.trainable_variables)
    growth = np.diff(size.sizes)
    return float(np.median(growth)), params, trainable


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--encoding", default="uint8")
    parser.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "out", "storage.json"))
    args = parser.parse_args()
    ours, params, variables = per_epoch_bytes(
        lambda d: GradientTensorBoard(d, heatmap_encoding=args.encoding),
        args.epochs)
    plain, _, _ = per_epoch_bytes(lambda d: keras.callbacks.TensorBoard(d),
                                  args.epochs)
    result = {
        "machine": machine.describe(),
        "model": "keras.applications.ResNet50",
        "parameters": params,
        "trainable_variables": variables,
        "heatmap_encoding": args.encoding,
        "bytes_per_epoch_with_callback": ours,
        "bytes_per_epoch_plain_tensorboard": plain,
        "bytes_per_epoch_gradients": ours - plain,
    }
    print(json.dumps(result, indent=2))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
