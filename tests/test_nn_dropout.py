"""Tests for `hax.nn.functional.dropout`/`dropout1d`/`dropout2d` and the `Dropout1d`,
`Dropout2d` layers, with PyTorch as the reference.

Masks are random, and HAX's keys are not torch's generator, so the comparisons are of
what the masks must share: which elements drop together, how often, and the scale of
the rest; the gradient is the same mask times the cotangent in both.
"""

import contextlib
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import hax
from hax.nn import Dropout1d, Dropout2d, dropout1d_apply, dropout2d_apply, functional as F

TRAIN, EVAL = {"train_mode": True}, {"train_mode": False}


def slices_are_constant(y, batched_axes):
    """Every slice over the axes after `batched_axes` holds one value."""
    flat = np.asarray(y).reshape(math.prod(y.shape[:batched_axes]), -1)
    return bool((flat == flat[:, :1]).all())


# ---------------------------------------------------------------- functional dropout


def test_dropout_function_is_the_dropout_layer():
    """`Dropout` applies `F.dropout` with the split key it keeps advancing."""
    tree, config = hax.nn.Dropout(0.3, rng=0)
    x = jnp.arange(1.0, 101.0)
    _, y = hax.apply_tree(tree, config, x)
    _, sub = jax.random.split(tree["buffers"]["rng"])
    np.testing.assert_array_equal(np.asarray(F.dropout(x, 0.3, rng=sub)), np.asarray(y))


def test_dropout_function_statistics_scaling_and_gradient_match_torch():
    n, p = 100_000, 0.25
    x = np.full(n, 2.0, np.float32)
    y, vjp = jax.vjp(lambda v: F.dropout(v, p, rng=jax.random.key(0)), jnp.asarray(x))
    (grad,) = vjp(jnp.ones(n))
    torch.manual_seed(0)
    x_t = torch.from_numpy(x).requires_grad_(True)
    y_t = torch.nn.functional.dropout(x_t, p)
    y_t.sum().backward()
    for name, out, g in (
        ("hax", np.asarray(y), np.asarray(grad)),
        ("torch", y_t.detach().numpy(), x_t.grad.numpy()),
    ):
        assert abs((out == 0).mean() - p) < 4 * math.sqrt(p * (1 - p) / n), name
        np.testing.assert_array_equal(out[out != 0], np.float32(2 / (1 - p)), err_msg=name)
        np.testing.assert_array_equal(g, np.where(out != 0, np.float32(1 / (1 - p)), 0), name)


@pytest.mark.parametrize("fn", [F.dropout, F.dropout1d, F.dropout2d])
def test_dropout_functions_without_training_or_p_are_identity(fn):
    x = jax.random.normal(jax.random.key(1), (2, 3, 4, 5) if fn is F.dropout2d else (2, 3, 4))
    np.testing.assert_array_equal(fn(x, 0.5, training=False), x)
    np.testing.assert_array_equal(fn(x, 0.0), x)  # no key needed
    np.testing.assert_array_equal(fn(x, 1.0, rng=jax.random.key(0)), 0)
    with pytest.raises(ValueError, match=r"needs a PRNG key: pass rng=jax.random.key"):
        fn(x, 0.5)
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match=f"between 0 and 1, but got {p}"):
            fn(x, p, training=False)
        with pytest.raises(ValueError, match="between 0 and 1"):
            getattr(torch.nn.functional, fn.__name__)(torch.from_numpy(np.array(x)), p)


# ---------------------------------------------------------------- channel dropout


@pytest.mark.parametrize(
    ("fn", "shape", "batched_axes"),
    [
        ("dropout1d", (40, 50, 6), 2),  # (N, C, L)
        ("dropout1d", (2000, 7), 1),  # unbatched (C, L): one mask entry per channel
        ("dropout2d", (40, 50, 3, 4), 2),  # (N, C, H, W)
        ("dropout2d", (40, 50, 6), 2),  # 3D is (N, C, L), as torch reads it
    ],
)
def test_channel_dropout_drops_whole_channels_like_torch(fn, shape, batched_axes):
    p = 0.4
    x = np.full(shape, 3.0, np.float32)
    r = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    y, vjp = jax.vjp(lambda v: getattr(F, fn)(v, p, rng=jax.random.key(2)), jnp.asarray(x))
    (grad,) = vjp(jnp.asarray(r))
    torch.manual_seed(0)
    x_t = torch.from_numpy(x).requires_grad_(True)
    with (
        pytest.warns(UserWarning)
        if shape == (40, 50, 6) and fn == "dropout2d"
        else contextlib.nullcontext()
    ):
        y_t = getattr(torch.nn.functional, fn)(x_t, p)
    (y_t * torch.from_numpy(r)).sum().backward()
    n_masks = math.prod(shape[:batched_axes])
    tolerance = 4 * math.sqrt(p * (1 - p) / n_masks)
    outs = (
        ("hax", np.asarray(y), np.asarray(grad)),
        ("torch", y_t.detach().numpy(), x_t.grad.numpy()),
    )
    for name, out, g in outs:
        assert out.shape == shape, name
        assert slices_are_constant(out, batched_axes), name
        assert abs((out == 0).mean() - p) < tolerance, name
        np.testing.assert_allclose(out[out != 0], 3 / (1 - p), rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(g, np.where(out != 0, r / (1 - p), 0), rtol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    ("fn", "shape"), [("dropout1d", (5,)), ("dropout1d", (2, 3, 4, 5)), ("dropout2d", (3, 4))]
)
def test_channel_dropout_rejects_other_ranks(fn, shape):
    with pytest.raises(
        ValueError,
        match=f"{fn}: expected .* found shape {re.escape(str(shape))}",
    ):
        getattr(F, fn)(jnp.ones(shape), 0.5, rng=jax.random.key(0))
    if fn == "dropout1d":  # torch raises too; for dropout2d it warns that it will
        with pytest.raises(RuntimeError, match="Expected 2D or 3D input"):
            torch.nn.functional.dropout1d(torch.ones(shape), 0.5)


LAYERS = [(Dropout1d, dropout1d_apply, (6, 5, 7)), (Dropout2d, dropout2d_apply, (6, 5, 3, 4))]


@pytest.mark.parametrize(("make", "apply", "shape"), LAYERS)
def test_channel_dropout_layers(make, apply, shape):
    tree, config = make(0.5, rng=0)
    assert config == TRAIN and tree["apply"] is apply
    assert tree["aux"] == {"p": 0.5} and tree["params"] == {}
    assert set(tree["buffers"]) == set(hax.nn.Dropout(rng=0)[0]["buffers"]) == {"rng"}
    assert make(rng=0)[0]["aux"]["p"] == 0.5  # torch's default
    assert make(0.2, True, rng=0)[0]["aux"] == {"p": 0.2}  # torch's positional inplace
    x = jnp.ones(shape)
    new_tree, y_eval = hax.apply_tree(tree, EVAL, x)
    np.testing.assert_array_equal(y_eval, x)
    assert new_tree["buffers"]["rng"] is tree["buffers"]["rng"]
    keys, outs = [tree["buffers"]["rng"]], []
    for _ in range(2):
        tree, y = hax.apply_tree(tree, config, x)
        keys.append(tree["buffers"]["rng"])
        outs.append(np.asarray(y))
        assert slices_are_constant(y, 2) and set(np.unique(y)) <= {0.0, 2.0}
    assert not np.array_equal(*(jax.random.key_data(k) for k in keys[1:]))
    assert not np.array_equal(*outs)
    state, bound = hax.bind_module(*make(0.5, rng=0))
    with hax.debug():
        _, y_checked = hax.apply_tree(*make(0.5, rng=0), x)
    np.testing.assert_array_equal(jax.jit(bound)(state, x)[1], y_checked)
    np.testing.assert_array_equal(y_checked, outs[0])


@pytest.mark.debug_off
@pytest.mark.wrong_types
@pytest.mark.parametrize(("make", "apply", "shape"), LAYERS)
def test_channel_dropout_layers_check_the_shape_in_eval_too(make, apply, shape):
    tree, _ = make(0.5, rng=0)
    with pytest.raises(ValueError, match="expected"):
        hax.apply_tree(tree, EVAL, jnp.ones(shape[-1:]))  # as torch
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        make(1.5, rng=0)
    with pytest.raises(hax.ValidationError, match="train_mode"):
        hax.validate(tree, {})


def test_channel_dropout_converts_from_torch():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(2, 4, 3), torch.nn.Dropout1d(0.3), torch.nn.Dropout(0.1)
    )
    tree, config = hax.interop.convert(model)
    assert config == TRAIN
    assert tree["submodules"]["1"]["apply"] is dropout1d_apply
    assert tree["submodules"]["1"]["aux"] == {"p": 0.3}
    x = np.random.default_rng(0).normal(size=(3, 2, 8)).astype(np.float32)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(hax.apply_tree(tree, EVAL, jnp.asarray(x))[1], expected, atol=1e-6)
    tree2d, _ = hax.interop.convert(torch.nn.Dropout2d(0.7))
    assert tree2d["apply"] is dropout2d_apply and tree2d["aux"] == {"p": 0.7}
