"""The seed articles' experiments, trained with GradientTensorBoard."""
