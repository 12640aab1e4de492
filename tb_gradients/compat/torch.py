"""Private Keras names the PyTorch capture relies on (Keras 3.10 - 3.15)."""

# Called on each update step, eagerly, with every gradient the optimizer
# applies (clipped, unscaled, averaged over gradient accumulation steps).
UPDATE_METHOD = "_backend_update_step"
# LossScaleOptimizer: the branch taken on a step with non-finite gradients
# (counted as a skipped step).
LOSS_SCALE_SKIP_METHOD = "_stateful_handle_non_finite_grads"

OPTIMIZER = (
    # the variables the optimizer updates, in model order
    "_trainable_variables",
    # maps a variable to its position
    "_get_variable_index",
    UPDATE_METHOD,
)
LOSS_SCALE_OPTIMIZER = (LOSS_SCALE_SKIP_METHOD,)
MODEL = ()
