"""Every private Keras name tb_gradients relies on, per backend, in one room.

The training capture hooks Keras where no public API reaches: the optimizer
method that receives the final (all-reduced, clipped, unscaled) gradients,
the loss-scale optimizer's branches, and on JAX the model's train-function
factory. Each backend's names live in the module of the same name here
(`compat.tensorflow`, `compat.jax`, `compat.torch`), with why each is
needed; `check` names the first one a future Keras lacks, before anything
is patched.
"""

import importlib

KERAS_VERSIONS_CHECKED = "3.10 - 3.15"
# Modules of `keras.src` the captures of every backend import (no public
# path reaches them).
KERAS_SRC_MODULES = (
    # `get_keras_mask`: the mask a layer's output carries (timesteps)
    "keras.src.backend",
)


def names(backend):
    """The module of private names for ``backend`` (the one selection
    point of this room)."""
    return importlib.import_module(f"tb_gradients.compat.{backend}")


def check(backend, model, optimizer, inner):
    """Raises a clear RuntimeError naming the first private attribute of
    this Keras that the ``backend``'s capture needs and does not find.

    Args:
      model: the Keras model being trained.
      optimizer: its optimizer (a `LossScaleOptimizer` under mixed
        precision).
      inner: the optimizer that applies the unscaled gradients (``optimizer``
        itself, or the loss-scale optimizer's inner one).
    """
    table = names(backend)
    owners = [(inner, table.OPTIMIZER), (model, table.MODEL)]
    if inner is not optimizer:
        owners.append((optimizer, table.LOSS_SCALE_OPTIMIZER))
    for owner, attributes in owners:
        for name in attributes:
            if not hasattr(owner, name):
                raise RuntimeError(
                    f"tb_gradients cannot hook this optimizer on the "
                    f"{backend} backend: {type(owner).__name__} has no "
                    f"attribute {name!r}. The training-gradient capture was "
                    f"checked against Keras {KERAS_VERSIONS_CHECKED}; use "
                    "source='probe' with this Keras version, or a checked "
                    "one.")
