"""Private Keras names the TensorFlow capture relies on (Keras 3.10 - 3.15)."""

# The optimizer method the hook wraps: called once per step, in
# cross-replica context, with every (all-reduced, clipped, unscaled)
# gradient and its variable.
UPDATE_METHOD = "_distributed_tf_update_step"
# LossScaleOptimizer: the branch taken on a step with non-finite gradients
# (counted as a skipped step).
LOSS_SCALE_SKIP_METHOD = "_stateful_handle_non_finite_grads"

# On the optimizer that applies the unscaled gradients.
OPTIMIZER = (
    # the variables the optimizer updates, in model order
    "_trainable_variables",
    # maps the tf.Variable given to the update step to its position
    "_get_variable_index",
    # the tf.distribute strategy the optimizer was created under
    "_distribution_strategy",
    UPDATE_METHOD,
)
LOSS_SCALE_OPTIMIZER = (LOSS_SCALE_SKIP_METHOD,)
MODEL = ()
# Modules of `keras.src` imported (no public path reaches them).
KERAS_SRC_MODULES = (
    # `get_keras_mask`: the mask a layer's output carries (timesteps)
    "keras.src.backend",
)
