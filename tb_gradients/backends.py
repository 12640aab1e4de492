"""Which Keras backends and distributions the callback runs on.

The statistics are computed by TensorFlow (`device_stats`, `window`) on
every backend: TensorFlow is installed wherever `keras.callbacks.TensorBoard`
writes event files. What differs per backend is how gradients are taken out
of the training step (`capture` for TensorFlow, `capture_jax` for JAX) and
how a backend's arrays reach TensorFlow (`as_tf`: zero-copy through DLPack
for JAX arrays on the CPU).

With several processes (`keras.distribution.initialize`), every process
runs the same device work and only the chief, process 0, writes
(`is_chief`): Keras's own TensorBoard callback has no chief logic on JAX.
"""

import keras
import numpy as np
import tensorflow as tf

SUPPORTED_BACKENDS = ("tensorflow", "jax", "torch")
# keras.distribution classes the JAX capture supports: the variables (and
# so the gradient accumulators) are replicated on every device.
SUPPORTED_DISTRIBUTIONS = ("DataParallel",)
# TensorFlow's CPU tensors must start at a multiple of this many bytes.
TF_ALIGNMENT = 64


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


def local_array(array):
    """A replicated JAX array's copy on one of this process's devices (the
    whole value: every device holds all of it)."""
    if len(array.devices()) == 1:
        return array
    return array.addressable_data(0)


def is_torch():
    return keras.backend.backend() == "torch"


def as_tf(value):
    """A TensorFlow tensor of a JAX array (zero-copy on the CPU) or of
    anything TensorFlow converts.

    The tensor aliases the JAX buffer: use it before that buffer is donated
    to the next training step.
    """
    if is_jax():
        import jax
        if isinstance(value, jax.Array):
            value = local_array(value)
            if value.dtype == np.dtype("bfloat16") or value.ndim == 0:
                return tf.constant(np.asarray(value))
            try:
                return tf.experimental.dlpack.from_dlpack(value.__dlpack__())
            except Exception:  # a device TensorFlow cannot reach: copy
                return tf.constant(np.asarray(value))
    if is_torch():
        import torch
        if isinstance(value, torch.Tensor):
            value = value.detach()
            if value.device.type != "cpu" or value.dtype == torch.bfloat16:
                return tf.constant(value.float().cpu().numpy())
            value = value.contiguous()
            if value.data_ptr() % TF_ALIGNMENT:
                # TensorFlow requires aligned buffers (a tensor made from a
                # numpy array may not be): copy with torch's allocator
                value = value.clone()
            return tf.experimental.dlpack.from_dlpack(
                torch.utils.dlpack.to_dlpack(value))
    return tf.convert_to_tensor(value)


def to_host(value):
    """A numpy copy of a (replicated) JAX array or a tensor."""
    if is_jax():
        import jax
        if isinstance(value, jax.Array):
            return np.array(local_array(value))
    if is_torch():
        import torch
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy().copy()
    return np.asarray(value)
