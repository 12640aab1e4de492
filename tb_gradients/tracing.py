"""Compiled functions traced once and then called without signature checks.

The callback's per-window functions (window end, reset, summary writing)
have one fixed signature each, and are called once per window. Calling them
as `tf.function`s would make TensorFlow's retracing detector, which counts
traces per Python code object across all function objects, warn when a
tuning loop trains a few models one after another; called as concrete
functions they are traced exactly once and cost less per call.
"""

import tensorflow as tf


class TracedOnce:
    """A `tf.function` traced at its first call, then called as concrete.

    Every call must have the same structure and dtypes as the first, and
    the same shapes unless ``relax_shapes`` (variables of the same shape and
    dtype may differ).

    Args:
      python_function: the function to compile.
      relax_shapes: trace tensor and array arguments with unknown
        dimensions (their ranks are kept).
    """

    def __init__(self, python_function, relax_shapes=False):
        self._function = tf.function(python_function, autograph=False)
        self._relax_shapes = relax_shapes
        self._concrete = None

    def __call__(self, *args):
        if self._concrete is None:
            signature = args
            if self._relax_shapes:
                signature = tf.nest.map_structure(_relaxed_spec, args)
            self._concrete = self._function.get_concrete_function(*signature)
        return self._concrete(*args)

    def tracing_count(self):
        return self._function.experimental_get_tracing_count()


def _relaxed_spec(value):
    if isinstance(value, tf.Variable):
        return value
    tensor = tf.convert_to_tensor(value)
    return tf.TensorSpec([None] * tensor.shape.rank, tensor.dtype)
