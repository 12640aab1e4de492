"""Gradient logging for Keras 3 (TensorFlow, JAX, PyTorch) and a "Gradients"
TensorBoard tab.

Pass `GradientTensorBoard` to `model.fit` like `keras.callbacks.TensorBoard`.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # Imported lazily so that `tensorboard` can load the plugin without
    # importing TensorFlow and Keras.
    if name == "GradientTensorBoard":
        from tb_gradients.callback import GradientTensorBoard

        return GradientTensorBoard
    if name in ("reader", "findings"):
        import importlib

        return importlib.import_module(f"tb_gradients.analysis.{name}")
    raise AttributeError(f"module 'tb_gradients' has no attribute {name!r}")


__all__ = ["GradientTensorBoard", "findings", "reader", "__version__"]
