"""Which Keras backends and distributions the callback runs on, and which
process writes.

What differs per backend is how gradients are taken out of the training
step (`capture`, one module per backend) and which window-end kernel reads
them (`window.kernels`); each of those rooms picks its backend's module in
one place.

With several processes (`keras.distribution.initialize`), every process
runs the same device work and only the chief, process 0, writes
(`is_chief`): Keras's own TensorBoard callback has no chief logic on JAX.
"""

import keras

SUPPORTED_BACKENDS = ("tensorflow", "jax", "torch")
# keras.distribution classes the JAX capture supports: the variables (and
# so the gradient accumulators) are replicated on every device.
SUPPORTED_DISTRIBUTIONS = ("DataParallel",)


def check_backend(backend):
    """Fails at construction on a backend the capture cannot hook."""
    if backend not in SUPPORTED_BACKENDS:
        raise ValueError(
            f"GradientTensorBoard supports the Keras backends "
            f"{SUPPORTED_BACKENDS}. Received: backend={backend!r} (set "
            "KERAS_BACKEND to one of them)")
    return backend


def is_jax():
    return keras.backend.backend() == "jax"


def process_index():
    """This process's index among the processes of a multi-process run."""
    if not is_jax():
        return 0
    import jax
    return jax.process_index()


def process_count():
    if not is_jax():
        return 1
    import jax
    return jax.process_count()


def is_chief():
    """Whether this process writes the logs (process 0)."""
    return process_index() == 0


def check_distribution():
    """Fails at `on_train_begin` under a distribution the capture does not
    support (names it and the supported ones)."""
    if not is_jax():
        return
    distribution = keras.distribution.distribution()
    if distribution is None:
        return
    name = type(distribution).__name__
    if name not in SUPPORTED_DISTRIBUTIONS:
        raise ValueError(
            f"GradientTensorBoard supports the keras.distribution "
            f"distributions {SUPPORTED_DISTRIBUTIONS} (variables replicated "
            f"on every device). Received: distribution={name}")


def is_torch():
    return keras.backend.backend() == "torch"
