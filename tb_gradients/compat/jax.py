"""Private Keras names the JAX capture relies on (Keras 3.10 - 3.15)."""

# Called once per step, inside the jitted train step, with every
# (all-reduced, clipped, unscaled) gradient.
UPDATE_METHOD = "_backend_update_step"
# LossScaleOptimizer: the two branches of its `lax.cond`, and the apply
# that runs the cond (the accumulators travel out of the branches through
# its optimizer-variable outputs).
LOSS_SCALE_OPTIMIZER = ("_stateless_handle_finite_grads",
                        "_stateless_handle_non_finite_grads",
                        "stateless_apply")

OPTIMIZER = (
    # the variables the optimizer updates, in model order
    "_trainable_variables",
    # maps a variable to its position
    "_get_variable_index",
    UPDATE_METHOD,
    # the update count, read inside the step under gradient accumulation
    "_iterations",
)
MODEL = (
    # compiles the capture's own step the way Keras compiles its own
    "_make_function",
    # the output shardings of the step's state under a distribution
    "_get_state_sharding_spec",
)
