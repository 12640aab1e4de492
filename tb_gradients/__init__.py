"""Gradient logging for Keras 3 / TensorFlow 2 and a "Gradients" TensorBoard tab.

Pass `GradientTensorBoard` to `model.fit` like `keras.callbacks.TensorBoard`.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # Imported lazily so that `tensorboard` can load the plugin without
    # importing TensorFlow and Keras.
    if name == "GradientTensorBoard":
        from tb_gradients.callback import GradientTensorBoard

        return GradientTensorBoard
    raise AttributeError(f"module 'tb_gradients' has no attribute {name!r}")


__all__ = ["GradientTensorBoard", "__version__"]
