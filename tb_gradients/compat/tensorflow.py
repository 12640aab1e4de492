"""Private Keras and TensorFlow names the TensorFlow backend relies on
(Keras 3.10 - 3.15, TensorFlow 2.16 - 2.21)."""

TENSORFLOW_VERSIONS_CHECKED = "2.16 - 2.21"
# The summary writer's resource handle, for the one raw write operation of
# a window's summaries (`writer.BatchWriter`); used on every backend.
SUMMARY_WRITER_RESOURCE = "_resource"

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
