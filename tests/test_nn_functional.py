"""Tests for `hax.nn.functional`: activations, `linear`, `bilinear` and the losses,
with `torch.nn.functional` as the reference (values and gradients)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from hax.nn import functional as F

RNG = np.random.default_rng(0)


def randn(*shape, scale=1.0):
    return np.asarray(RNG.normal(size=shape) * scale, np.float32)


def check(jax_fn, torch_fn, args, wrt=(0,), atol=1e-5, grad_atol=1e-4):
    """`jax_fn(*args)` matches `torch_fn(*args)` in value, and the gradients of
    `sum(out * cotangent)` w.r.t. the args at positions `wrt` match too."""
    args_j = [jnp.asarray(a) for a in args]

    def f(*diff):
        full = list(args_j)
        for i, d in zip(wrt, diff, strict=True):
            full[i] = d
        return jax_fn(*full)

    y, vjp = jax.vjp(f, *[args_j[i] for i in wrt])
    args_t = [torch.from_numpy(np.array(a)) for a in args]
    for i in wrt:
        args_t[i].requires_grad_(True)
    y_t = torch_fn(*args_t)
    assert y.shape == tuple(y_t.shape)
    assert y.dtype == jnp.float32
    y_np = y_t.detach().numpy()
    scale = max(1.0, float(np.nanmax(np.abs(y_np), initial=0.0)))
    np.testing.assert_allclose(np.asarray(y), y_np, atol=atol * scale, rtol=1e-5)
    cot = randn(*y.shape)
    grads = vjp(jnp.asarray(cot))
    y_t.backward(torch.from_numpy(cot))
    for i, g in zip(wrt, grads, strict=True):
        np.testing.assert_allclose(
            np.asarray(g), args_t[i].grad.numpy(), atol=grad_atol, rtol=1e-4, err_msg=f"arg {i}"
        )
    return np.asarray(y)


# Few distinct shapes, shared by all tests: in eager JAX every new shape costs a
# compilation of each op, which dominates this file's runtime.
SHAPES = [(4,), (2, 4, 3, 2)]

# ---------------------------------------------------------------- activations


# relu, gelu (both forms), silu, tanh, sigmoid, softmax and log_softmax are compared
# with torch (values and gradients, several shapes) in tests/test_nn_activation.py,
# next to the layers that apply them, so that the two share their compilations.


def test_relu_gradient_at_zero_is_zero_like_torch():
    x = np.array([-1.0, 0.0, 0.0, 2.0] * 12, np.float32).reshape(SHAPES[-1])
    check(F.relu, TF.relu, [x])
    g = jax.grad(lambda v: F.relu(v).sum())(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(g), (x > 0).astype(np.float32))


def test_gelu_exact_formula():
    x = jnp.asarray(randn(*SHAPES[-1], scale=2.0))
    erf = np.vectorize(math.erf)
    expected = np.asarray(x) * (1 + erf(np.asarray(x) / math.sqrt(2))) / 2
    np.testing.assert_allclose(np.asarray(F.gelu(x)), expected, atol=1e-6)


def test_gelu_bad_approximate():
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(jnp.ones(3), approximate="erf")


def test_inplace_is_accepted_and_ignored():
    x = jnp.asarray(randn(5))
    np.testing.assert_array_equal(F.relu(x, inplace=True), F.relu(x))
    np.testing.assert_array_equal(F.silu(x, True), F.silu(x))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_dtype_casts_first(name):
    x = jnp.asarray(randn(6, 4)).astype(jnp.bfloat16)
    y = getattr(F, name)(x, -1, dtype=jnp.float32)
    assert y.dtype == jnp.float32
    y_t = getattr(TF, name)(
        torch.from_numpy(np.asarray(x, np.float32)).bfloat16(), -1, dtype=torch.float32
    )
    np.testing.assert_allclose(np.asarray(y), y_t.numpy(), atol=1e-6)


@pytest.mark.wrong_types
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_requires_dim(name):
    with pytest.raises(ValueError, match="dim is required"):
        getattr(F, name)(jnp.ones((2, 3)))
    with pytest.raises(TypeError, match="dim must be an int"):
        getattr(F, name)(jnp.ones((2, 3)), 1.0)


# ---------------------------------------------------------------- linear, bilinear


@pytest.mark.parametrize(("shape", "bias"), [((4,), False), ((2, 3, 4), True)])
def test_linear_matches_torch(shape, bias):
    args = [randn(*shape), randn(5, 4)] + ([randn(5)] if bias else [])
    check(F.linear, TF.linear, args, wrt=tuple(range(len(args))))


@pytest.mark.parametrize(("batch", "bias"), [((3,), True), ((2, 3), False)])
def test_bilinear_matches_torch(batch, bias):
    args = [randn(*batch, 4), randn(*batch, 2), randn(5, 4, 2)] + ([randn(5)] if bias else [])
    check(F.bilinear, TF.bilinear, args, wrt=tuple(range(len(args))))


# ---------------------------------------------------------------- cross_entropy, nll_loss

# (input shape, target shape): batched, unbatched, K-dimensional
CLASS_SHAPES = [((6, 4), (6,)), ((4,), ()), ((2, 4, 3, 2), (2, 3, 2))]


def class_targets(shape, n_classes, ignore_index=None, n_ignored=0):
    t = RNG.integers(0, n_classes, size=shape)
    if not shape and t == ignore_index:  # keep the single unbatched target
        t = (t + 1) % n_classes
    if ignore_index is not None and n_ignored and t.size:
        flat = t.reshape(-1)
        flat[RNG.choice(t.size, size=min(n_ignored, t.size), replace=False)] = ignore_index
        t = flat.reshape(shape)
    return np.asarray(t, np.int64)


# (weighted, ignore_index, label_smoothing): -100 is out of range, 2 and 0 are real classes
CE_OPTIONS = [(False, -100, 0.0), (True, -100, 0.0), (False, 2, 0.25), (True, 0, 0.1)]
# every option and reduction for (N, C) inputs; the first and last options for the rest
# (each new shape costs compilations, and this file should stay fast)
CE_CASES = [
    (in_shape, t_shape, *opts, reduction)
    for in_shape, t_shape in CLASS_SHAPES
    for opts in (CE_OPTIONS if len(in_shape) == 2 else CE_OPTIONS[::3])
    for reduction in ("mean", "sum", "none")
]


@pytest.mark.parametrize(
    ("in_shape", "t_shape", "weighted", "ignore_index", "label_smoothing", "reduction"), CE_CASES
)
def test_cross_entropy_class_indices_match_torch(
    in_shape, t_shape, weighted, ignore_index, label_smoothing, reduction
):
    n_classes = in_shape[0] if len(in_shape) == 1 else in_shape[1]
    x = randn(*in_shape, scale=2.0)
    t = class_targets(t_shape, n_classes, ignore_index, n_ignored=2 if t_shape else 0)
    w = RNG.uniform(0.2, 2.0, size=n_classes).astype(np.float32) if weighted else None
    kw = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)

    def ours(v):
        return F.cross_entropy(v, jnp.asarray(t), None if w is None else jnp.asarray(w), **kw)

    def theirs(v):
        return TF.cross_entropy(
            v, torch.from_numpy(t), None if w is None else torch.from_numpy(w), **kw
        )

    check(ours, theirs, [x])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("weighted", "ignore_index"), [(False, -100), (True, 1)])
@pytest.mark.parametrize(("in_shape", "t_shape"), CLASS_SHAPES, ids=str)
def test_nll_loss_matches_torch(in_shape, t_shape, weighted, ignore_index, reduction):
    n_classes = in_shape[0] if len(in_shape) == 1 else in_shape[1]
    x = randn(*in_shape)
    t = class_targets(t_shape, n_classes, ignore_index, n_ignored=2 if t_shape else 0)
    w = RNG.uniform(0.2, 2.0, size=n_classes).astype(np.float32) if weighted else None
    kw = dict(ignore_index=ignore_index, reduction=reduction)
    check(
        lambda v: F.nll_loss(v, jnp.asarray(t), None if w is None else jnp.asarray(w), **kw),
        lambda v: TF.nll_loss(
            v, torch.from_numpy(t), None if w is None else torch.from_numpy(w), **kw
        ),
        [x],
    )


def test_cross_entropy_mean_divides_by_weights_of_kept_targets():
    """The 'mean' denominator is the summed weight of the non-ignored targets, not N."""
    x = jnp.asarray(randn(6, 4))
    t = np.array([0, 1, -100, 3, 3, -100])
    w = np.array([1.0, 3.0, 5.0, 7.0], np.float32)
    logp = np.asarray(jax.nn.log_softmax(x, axis=1))
    kept = t != -100
    losses = -w[t[kept]] * logp[kept, t[kept]]
    got = F.cross_entropy(x, jnp.asarray(t), jnp.asarray(w))
    np.testing.assert_allclose(float(got), losses.sum() / w[t[kept]].sum(), rtol=1e-5)
    got = F.cross_entropy(x, jnp.asarray(t), jnp.asarray(w), reduction="sum")
    np.testing.assert_allclose(float(got), losses.sum(), rtol=1e-5)
    # every target ignored: 0 / 0, like torch
    all_ignored = jnp.full((6,), -100)
    assert np.isnan(float(F.cross_entropy(x, all_ignored)))
    assert np.isnan(TF.cross_entropy(torch.zeros(6, 4), torch.full((6,), -100)).item())
    np.testing.assert_array_equal(F.cross_entropy(x, all_ignored, reduction="none"), 0.0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("weighted", "label_smoothing"), [(False, 0.0), (True, 0.3)])
@pytest.mark.parametrize("in_shape", [s for s, _ in CLASS_SHAPES], ids=str)
def test_cross_entropy_probability_targets_match_torch(
    in_shape, weighted, label_smoothing, reduction
):
    cdim = 0 if len(in_shape) == 1 else 1
    n_classes = in_shape[cdim]
    x = randn(*in_shape, scale=2.0)
    p = np.asarray(jax.nn.softmax(jnp.asarray(randn(*in_shape)), axis=cdim))
    w = RNG.uniform(0.2, 2.0, size=n_classes).astype(np.float32) if weighted else None
    kw = dict(reduction=reduction, label_smoothing=label_smoothing)
    check(
        lambda v, q: F.cross_entropy(v, q, None if w is None else jnp.asarray(w), **kw),
        lambda v, q: TF.cross_entropy(v, q, None if w is None else torch.from_numpy(w), **kw),
        [x, p],
        wrt=(0, 1),
    )


def test_cross_entropy_label_smoothing_formula():
    x = jnp.asarray(randn(6, 4))
    t = jnp.array([0, 2, 1, 1, 3, 0])
    eps = 0.1
    logp = np.asarray(jax.nn.log_softmax(x, -1))
    q = np.full((6, 4), eps / 4)
    q[np.arange(6), np.asarray(t)] += 1 - eps
    expected = -(q * logp).sum(-1).mean()
    np.testing.assert_allclose(
        float(F.cross_entropy(x, t, label_smoothing=eps)), expected, rtol=1e-5
    )


def test_cross_entropy_under_jit_matches_eager():
    x = jnp.asarray(randn(2, 4, 3, 2))
    t = jnp.asarray(class_targets((2, 3, 2), 4, -100, 3))
    w = jnp.asarray(RNG.uniform(0.5, 1.5, 4).astype(np.float32))
    f = jax.jit(lambda a, b, c: F.cross_entropy(a, b, c, label_smoothing=0.1))
    np.testing.assert_allclose(f(x, t, w), F.cross_entropy(x, t, w, label_smoothing=0.1), rtol=1e-6)


def test_out_of_range_class_gives_nan():
    x = jnp.zeros((6, 4))
    for bad in (4, -1):
        t = jnp.array([0, bad, 1, 2, 3, 0])
        assert np.isnan(float(F.cross_entropy(x, t)))
        loss = np.asarray(F.nll_loss(x, t, reduction="none"))
        assert np.isnan(loss[1]) and not np.isnan(np.delete(loss, 1)).any()


def test_loss_argument_errors():
    x, t = jnp.zeros((6, 4)), jnp.array([0, 1, 2, 3, 0, 1])
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        F.nll_loss(x, t, reduction="batchmean")
    with pytest.raises(ValueError, match="reduction"):
        F.mse_loss(x, x, reduction="max")
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        F.cross_entropy(x, jnp.array([0, 1]))
    with pytest.raises(ValueError, match="weight"):
        F.cross_entropy(x, t, jnp.ones(3))
    with pytest.raises(ValueError, match="weight"):
        F.nll_loss(x, t, jnp.ones(5))
    with pytest.raises(TypeError, match="integers"):
        F.cross_entropy(x, t.astype(jnp.float32))
    with pytest.raises(TypeError, match="floats"):
        F.cross_entropy(x, jnp.zeros((6, 4), jnp.int32))
    with pytest.raises(ValueError, match="class dimension"):
        F.cross_entropy(jnp.zeros(()), jnp.array(0))
    # keyword-only after weight: PyTorch's positional size_average cannot bind to ignore_index
    with pytest.raises(TypeError):
        F.cross_entropy(x, t, None, -100)


# ---------------------------------------------------------------- mse_loss


@pytest.mark.parametrize(
    ("shape", "reduction"),
    [(SHAPES[-1], "mean"), (SHAPES[-1], "sum"), (SHAPES[-1], "none"), ((6, 4), "mean")],
)
def test_mse_loss_matches_torch(shape, reduction):
    check(
        lambda a, b: F.mse_loss(a, b, reduction=reduction),
        lambda a, b: TF.mse_loss(a, b, reduction=reduction),
        [randn(*shape), randn(*shape)],
        wrt=(0, 1),
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_weight_matches_torch(reduction):
    w = RNG.uniform(0.1, 2.0, size=(6, 4)).astype(np.float32)
    check(
        lambda a, b: F.mse_loss(a, b, reduction=reduction, weight=jnp.asarray(w)),
        lambda a, b: TF.mse_loss(a, b, reduction=reduction, weight=torch.from_numpy(w)),
        [randn(6, 4), randn(6, 4)],
        wrt=(0, 1),
    )
    with pytest.raises(ValueError, match="weight"):
        F.mse_loss(jnp.ones((6, 4)), jnp.ones((6, 4)), weight=jnp.ones(4))


def test_mse_loss_broadcasts_like_torch():
    with pytest.warns(UserWarning):
        check(
            lambda a, b: F.mse_loss(a, b),
            lambda a, b: TF.mse_loss(a, b),
            [randn(6, 4), randn(4)],
            wrt=(0, 1),
        )
