"""A JAX training run under keras.distribution, run as a real process.

    python -m tests.distributed_training LOGDIR --mode single
    python -m tests.distributed_training LOGDIR --mode devices
    python -m tests.distributed_training LOGDIR --mode process \\
        --process-id I --port P

``single``: one CPU device, no distribution (the reference). ``devices``:
`keras.distribution.DataParallel` over 2 CPU devices of this process
(``--xla_force_host_platform_device_count=2``); it first checks that a
`ModelParallel` distribution is refused at ``on_train_begin`` and writes the
error to ``LOGDIR/../model_parallel_error.txt``. ``process``: process I of
2 on localhost, joined with `keras.distribution.initialize` over JAX's gloo
CPU collectives, DataParallel over both processes' devices. Every mode
trains the same model from the same weights on the same `tf.data` batches
(a global batch of 16) with ``gradient_window=3``, and writes its pid to
``LOGDIR/../pid-<I>.txt``.
"""

import argparse
import os
import sys

MODES = ("single", "devices", "process")


def parse():
    parser = argparse.ArgumentParser()
    parser.add_argument("logdir")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    return parser.parse_args()


def main():
    args = parse()
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.mode == "devices":
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax
    if args.mode == "process":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import keras
    import numpy as np
    import tensorflow as tf

    from tb_gradients import GradientTensorBoard

    parent = os.path.dirname(os.path.abspath(args.logdir))
    if args.mode == "process":
        keras.distribution.initialize(
            job_addresses=f"localhost:{args.port}", num_processes=2,
            process_id=args.process_id)
    with open(os.path.join(parent, f"pid-{args.process_id}.txt"), "w") as f:
        f.write(str(os.getpid()))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, 64)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)

    def new_model():
        model = keras.Sequential([
            keras.Input((6,)),
            keras.layers.Dense(8, activation="tanh", name="hidden"),
            keras.layers.Dense(8, activation="tanh", name="hidden_2"),
            keras.layers.Dense(3, name="out")])
        weights = np.random.default_rng(5)
        model.set_weights([0.5 * weights.normal(size=w.shape).astype("float32")
                           for w in model.get_weights()])
        model.compile(keras.optimizers.Adam(0.01),
                      keras.losses.SparseCategoricalCrossentropy(
                          from_logits=True))
        return model

    if args.mode == "devices":
        layouts = keras.distribution.LayoutMap(keras.distribution.DeviceMesh(
            (2,), ["model"], devices=jax.devices()))
        layouts["hidden/kernel"] = (None, "model")
        keras.distribution.set_distribution(keras.distribution.ModelParallel(
            layout_map=layouts, batch_dim_name=None))
        model = new_model()
        try:
            model.fit(dataset, epochs=1, verbose=0, callbacks=[
                GradientTensorBoard(os.path.join(parent, "refused"))])
            refused = "not refused"
        except ValueError as error:
            refused = str(error)
        with open(os.path.join(parent, "model_parallel_error.txt"), "w") as f:
            f.write(refused)
    if args.mode != "single":
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=jax.devices()))
    model = new_model()
    model.fit(dataset, epochs=3, verbose=0, callbacks=[GradientTensorBoard(
        args.logdir, source="both", probe_data=(x[:16], y[:16]),
        gradient_window=3)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
