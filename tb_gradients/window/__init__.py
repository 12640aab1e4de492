"""A source's window state and its end: the variables' layout (`layout`:
grouping by shape, matrix views, pooling), the backend-neutral bookkeeping
of a source's windows (`source`), the device work per backend
(`kernels`), and the host-side statistics from the kernel's reductions
(`statistics`)."""
