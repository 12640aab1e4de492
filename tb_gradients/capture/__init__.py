"""Getting gradients out of `fit`, per Keras backend.

Three kinds of gradients, each with one class per backend in the module of
the backend's name (`capture.tensorflow`, `capture.jax`, `capture.torch`):

* the training capture (`capture.base.TrainingCapture`): the gradients the
  optimizer applied, summed over each window inside the compiled step;
* the probe gradient: the loss's gradient on fixed probe data at a window's
  end (`capture.probe_data` makes the batches);
* the timestep gradients: d(loss)/d(output) of recurrent layers
  (`capture.recurrent` finds the layers and knows their gates).

`for_backend` is the one place that picks them.
"""

import importlib

# Class names of each backend module: (training, probe, timesteps).
_CLASSES = {
    "tensorflow": ("TrainingGradientCapture", "ProbeGradients",
                   "TimestepGradients"),
    "jax": ("JaxTrainingCapture", "JaxProbeGradients",
            "JaxTimestepGradients"),
    "torch": ("TorchTrainingCapture", "TorchProbeGradients",
              "TorchTimestepGradients"),
}


def for_backend(backend):
    """``(training capture, probe, timesteps)`` classes of ``backend``."""
    module = importlib.import_module(f"tb_gradients.capture.{backend}")
    return tuple(getattr(module, name) for name in _CLASSES[backend])
