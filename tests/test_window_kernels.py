"""The JAX and torch window-end kernels compute what the TensorFlow kernel
computes, from the same window gradients.

Each kernel runs in its own framework's ops on its own arrays (the kernels
need no Keras model: a layout, stacked gradients and a state), so the three
run side by side in this process. Windows of random gradients, with one
variable turning NaN and Inf (the masked recomputation), are given to all
three; every reduction, histogram, heatmap, gate table and the saved state
must agree. The TensorFlow kernel itself is tested against numpy in
tests/test_device_stats.py and, through training, against GradientTape
loops (tests/test_statistics_exact.py).
"""

import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
import torch

from tb_gradients.window import layout as layouts
from tb_gradients.window import statistics
from tb_gradients.window.kernels import jax as jax_kernel
from tb_gradients.window.kernels import tensorflow as tf_kernel
from tb_gradients.window.kernels import torch as torch_kernel

from tests import series_compare

KERNELS = {"jax": (jax_kernel.Kernel, jnp.asarray),
           "torch": (torch_kernel.Kernel, torch.from_numpy)}

# (shape, stacked count, heatmap cells, encoding, buckets, fused gates)
LAYOUTS = [
    ((37, 19), 3, 64, "uint8", 7, 0),           # ragged blocks
    ((5,), 4, 16384, "float32", 5, 0),           # exact (float64) path
    ((3, 3, 4, 8), 2, 16, "uint8", 30, 0),      # a convolution kernel
    ((300, 200), 2, 100, "uint8", 30, 4),       # fused gates, pooled
    ((6, 8), 2, 16384, "uint8", 0, 4),          # no histogram, exact gates
    ((12, 10), 1, 0, "uint8", 30, 0),           # no heatmap
]
NONFINITE_WINDOW = 2


def windows(shape, count, seed=0, number=4):
    """Window gradients ``(count, size)``: the first row's first elements
    exactly 0 (dead units), the second row NaN and Inf in one window."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    for window in range(number):
        g = (rng.normal(size=(count, size)) * (window + 1)).astype(np.float32)
        g[0, :min(3, size)] = 0
        if window == NONFINITE_WINDOW and count > 1:
            g[1, 1], g[1, 3] = np.nan, np.inf
        yield g


def run(kernel, convert, layout, count, gradients):
    """The kernel's host outputs per window, with the rows whose sums came
    out non-finite recomputed by `masked_end` and merged in, as
    `window.source.SourceWindows` does; and its saved state."""
    state = kernel.new_state(layout, count, convert(np.zeros(1, np.float32)))
    gated = [(0, layout)] if layout.gate_count else []
    columns = [statistics.REDUCTIONS.index(name) for name in
               ("l1", "sq", "accumulated_l1", "accumulated_sq")]
    l1 = statistics.REDUCTIONS.index("l1")
    abs_l1 = statistics.REDUCTIONS.index("accumulated_abs_l1")
    outputs = []
    for g in gradients:
        array = convert(g)
        out = kernel.to_host(kernel.group_end(state, layout, array, True,
                                              gated))
        out["masked"] = []
        flagged = ~np.isfinite(out["reductions"][:, columns]).all(axis=1)
        rows = np.flatnonzero(flagged)
        finite_g = np.isfinite(out["reductions"][:, l1])
        if len(rows):
            masked = kernel.to_host(kernel.masked_end(
                state, layout, array, flagged & ~finite_g))
        for row in rows:
            if finite_g[row]:
                masked["reductions"][row, abs_l1] = out["reductions"][
                    row, abs_l1]
            for name in ("reductions", "histogram", "heatmap"):
                if name in out:
                    out[name][row] = masked[name][row]
            out["masked"].append(int(row))
        outputs.append(out)
    saved = {name: kernel.to_host(array) if not isinstance(
        array, np.ndarray) else array
        for name, array in kernel.saved_arrays(state)}
    return outputs, saved


def assert_same_outputs(got, want, layout, what):
    scale = series_compare.finite(np.abs(want["reductions"])).max(axis=0)
    series_compare.assert_close(got["reductions"], want["reductions"], 1e-5,
                                1e-5 * scale, f"{what} reductions")
    moved = np.cumsum(got["histogram"], 1) - np.cumsum(want["histogram"], 1)
    assert np.abs(moved).max(initial=0) <= 1, what
    assert got["histogram"].sum() == want["histogram"].sum(), what
    if layout.heatmap:
        assert got["heatmap"].dtype == want["heatmap"].dtype
        if layout.encoding == "uint8":
            difference = np.abs(got["heatmap"].astype(int)
                                - want["heatmap"].astype(int))
            assert difference.max() <= 1, what
        else:
            series_compare.assert_close(got["heatmap"], want["heatmap"],
                                        1e-5, 1e-6, f"{what} heatmap")
    else:
        assert "heatmap" not in got
    assert set(got.get("gates", {})) == set(want.get("gates", {}))
    for row, (table, pooled) in want.get("gates", {}).items():
        series_compare.assert_close(got["gates"][row][0], table, 1e-9, 0,
                                    f"{what} gate table")
        series_compare.assert_close(got["gates"][row][1], pooled, 1e-6, 0,
                                    f"{what} gate heatmap")


@pytest.mark.parametrize("backend", sorted(KERNELS))
@pytest.mark.parametrize("spec", LAYOUTS, ids=lambda s: str(s[0]))
def test_kernel_equals_the_tensorflow_kernel(backend, spec):
    shape, count, cells, encoding, buckets, gates = spec
    layout = layouts.VariableLayout(
        shape, cells or layouts.DEFAULT_POOL_CELLS, bool(cells), encoding,
        buckets, gate_count=gates, gate_cells=cells // gates if gates else 0)
    gradients = list(windows(shape, count))
    want, want_state = run(tf_kernel.Kernel(), tf.constant, layout, count,
                           gradients)
    kernel_class, convert = KERNELS[backend]
    got, got_state = run(kernel_class(), convert, layout, count, gradients)
    for window, (g, w) in enumerate(zip(got, want)):
        assert set(g) == set(w), window
        assert g["masked"] == w["masked"], window
        assert_same_outputs(g, w, layout, f"window {window}")
    assert list(got_state) == list(want_state)
    for name, array in want_state.items():
        assert got_state[name].dtype == array.dtype, name
        assert got_state[name].shape == array.shape, name
    # C and its compensation: the same float32 and bfloat16 operations
    np.testing.assert_array_equal(got_state["accumulated"],
                                  want_state["accumulated"])
    np.testing.assert_array_equal(got_state["compensation"],
                                  want_state["compensation"])
    for name in ("pooled_abs", "accumulated_l1"):
        series_compare.assert_close(got_state[name], want_state[name], 1e-6,
                                    0, name)
    if count > 1:
        assert got[NONFINITE_WINDOW]["masked"] == [1]
        for name in ("nan_count", "inf_count"):
            column = statistics.REDUCTIONS.index(name)
            assert got[NONFINITE_WINDOW]["reductions"][1, column] == 1


@pytest.mark.parametrize("source", sorted(KERNELS) + ["tensorflow"])
@pytest.mark.parametrize("target", sorted(KERNELS) + ["tensorflow"])
def test_saved_state_continues_on_any_backend(source, target):
    """A state saved by one kernel (`resume`) loads into another, and the
    next window's outputs equal an uninterrupted run's."""
    kernels = dict(KERNELS, tensorflow=(tf_kernel.Kernel, tf.constant))
    layout = layouts.VariableLayout((40, 24), 64, True, "uint8", 10)
    gradients = list(windows((40, 24), 2, seed=3, number=3))
    gradients[NONFINITE_WINDOW][1, 1] = 0  # finite: no masked path
    gradients[NONFINITE_WINDOW][1, 3] = 0
    kernel_class, convert = kernels[source]
    _, saved = run(kernel_class(), convert, layout, 2, gradients[:2])
    kernel_class, convert = kernels[target]
    kernel = kernel_class()
    state = kernel.new_state(layout, 2, convert(np.zeros(1, np.float32)))
    kernel.load_state(state, saved)
    resumed = kernel.to_host(kernel.group_end(
        state, layout, convert(gradients[2]), True))
    want, _ = run(kernel_class(), convert, layout, 2, gradients)
    assert_same_outputs(resumed, want[2], layout, f"{source} -> {target}")
    with pytest.raises(ValueError, match="pooled_abs"):
        kernel.load_state(state, dict(saved, pooled_abs=saved[
            "pooled_abs"][:, :3]))


@pytest.mark.parametrize("backend", sorted(KERNELS) + ["tensorflow"])
def test_weight_norms_and_one_transfer(backend):
    kernels = dict(KERNELS, tensorflow=(tf_kernel.Kernel, tf.constant))
    kernel_class, convert = kernels[backend]
    kernel = kernel_class()
    rng = np.random.default_rng(5)
    weights = [rng.normal(size=shape).astype(np.float32)
               for shape in [(7, 3), (3,), (7, 3), (2, 2, 5)]]
    norms = kernel.to_host(kernel.weight_norms([convert(w) for w in weights]))
    assert norms.dtype == np.float64
    np.testing.assert_allclose(
        norms, [np.linalg.norm(w.astype(np.float64)) for w in weights],
        rtol=1e-6)
    assert kernel.host_bytes == 4 * 8


def test_a_sources_groups_together_equal_the_tensorflow_kernel():
    """`window_end` over a model's groups: exact ones (which the JAX kernel
    reduces in one call), pooled ones and a gated one, two windows."""
    specs = [((4, 6), 2, 0), ((6,), 3, 0), ((), 1, 0), ((300, 200), 1, 0),
             ((5, 8), 1, 4), ((7,), 1, 0)]
    group_layouts = [layouts.VariableLayout(
        shape, 64, True, "uint8", 9, gate_count=gates,
        gate_cells=16 if gates else 0) for shape, _, gates in specs]
    gated = [[(0, layout)] if layout.gate_count else []
             for layout in group_layouts]
    rng = np.random.default_rng(9)
    windows_ = [[(rng.normal(size=(count, layout.size)) * scale).astype(
        np.float32) for (_, count, _), layout in zip(specs, group_layouts)]
        for scale in (1.0, 3.0)]
    results = {}
    for backend, (kernel_class, convert) in dict(
            KERNELS, tensorflow=(tf_kernel.Kernel, tf.constant)).items():
        kernel = kernel_class()
        states = [kernel.new_state(layout, count,
                                   convert(np.zeros(1, np.float32)))
                  for (_, count, _), layout in zip(specs, group_layouts)]
        results[backend] = [kernel.to_host(kernel.window_end(
            states, group_layouts, [convert(g) for g in window], True,
            gated)) for window in windows_]
    for backend in KERNELS:
        for window, (got, want) in enumerate(zip(results[backend],
                                                 results["tensorflow"])):
            for number, layout in enumerate(group_layouts):
                assert_same_outputs(got[number], want[number], layout,
                                    f"{backend} window {window} group "
                                    f"{number}")
