"""Tests for the normalisation layers (`hax/nn/_norm.py`), with PyTorch as the reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import hax
from hax.interop import from_torch
from hax.nn import functional as F
from hax.nn._norm import (
    BatchNorm1d,
    BatchNorm2d,
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    LayerNorm,
    RMSNorm,
    batch_norm1d_apply,
    batch_norm2d_apply,
    group_norm_apply,
    instance_norm1d_apply,
    instance_norm2d_apply,
    layer_norm_apply,
    rms_norm_apply,
)

INT_DTYPE = jnp.int64 if jax.config.jax_enable_x64 else jnp.int32


def normal(shape, seed=0, loc=0.0, scale=1.0):
    return np.random.default_rng(seed).normal(loc, scale, size=shape).astype(np.float32)


def randomize(layer, seed=0):
    """Non-trivial params and running stats, so that every term of the output matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(1 + 0.5 * torch.randn(p.shape, generator=gen))
        for name, b in layer.named_buffers():
            if name == "running_mean":
                b.copy_(torch.randn(b.shape, generator=gen))
            elif name == "running_var":
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
    return layer


def assert_buffers_match(tree, layer, atol=1e-6):
    for name, b in layer.named_buffers():
        np.testing.assert_allclose(
            np.asarray(tree["buffers"][name]), b.numpy(), rtol=1e-5, atol=atol, err_msg=name
        )


def check_against_torch(tree, config, layer, x, atol=1e-5):
    """Outputs, input and param gradients, and new buffers of one call vs torch."""
    tree = from_torch(layer, tree)
    g = normal(x.shape, seed=99)
    xt = torch.tensor(x, requires_grad=True)
    yt = layer(xt)
    (yt * torch.from_numpy(g)).sum().backward()

    state, apply = hax.bind_module(tree, config)
    params = {k: v for k, v in state.items() if k.startswith("params/")}
    buffers = {k: v for k, v in state.items() if k not in params}

    def loss(x, params):
        new_state, y = apply({**buffers, **params}, x)
        return jnp.sum(y * g), (new_state, y)

    # jitted: one compilation instead of one per primitive keeps the file fast
    (gx, grads), (new_state, y) = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(
        jnp.asarray(x), params
    )
    new_tree, _ = hax.unbind_module(new_state, apply)
    gp = {k.removeprefix("params/"): v for k, v in grads.items()}
    assert y.shape == tuple(yt.shape) and y.dtype == jnp.float32
    scale = max(1.0, float(np.abs(yt.detach().numpy()).max()))
    np.testing.assert_allclose(np.asarray(y), yt.detach().numpy(), rtol=1e-5, atol=atol * scale)
    np.testing.assert_allclose(np.asarray(gx), xt.grad.numpy(), rtol=1e-4, atol=1e-4)
    torch_grads = dict(layer.named_parameters())
    assert set(gp) == set(torch_grads)
    for name, p in torch_grads.items():
        np.testing.assert_allclose(
            np.asarray(gp[name]), p.grad.numpy(), rtol=1e-4, atol=1e-4, err_msg=name
        )
    assert_buffers_match(new_tree, layer)
    return new_tree


# ---------------------------------------------------------------- BatchNorm: build

BN = {"1d": (BatchNorm1d, torch.nn.BatchNorm1d), "2d": (BatchNorm2d, torch.nn.BatchNorm2d)}


@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_batchnorm_init_matches_torch(kind):
    make, make_torch = BN[kind]
    tree, config = make(6)
    assert config == {"train_mode": True}
    assert tree["apply"] is {"1d": batch_norm1d_apply, "2d": batch_norm2d_apply}[kind]
    assert tree["aux"] == {
        "num_features": 6,
        "eps": 1e-5,
        "momentum": 0.1,
        "affine": True,
        "track_running_stats": True,
        "bias": True,
        "axis_name": None,
    }
    assert hax.is_structure_tree(tree)
    state = make_torch(6).state_dict()
    assert set(state) == set(tree["params"]) | set(tree["buffers"])
    for name, value in state.items():
        ours = tree["params"].get(name, tree["buffers"].get(name))
        assert ours.shape == tuple(value.shape), name
        np.testing.assert_array_equal(np.asarray(ours), value.numpy(), err_msg=name)
    assert tree["buffers"]["num_batches_tracked"].dtype == INT_DTYPE
    assert tree["params"]["weight"].dtype == jnp.float32
    assert tree["buffers"]["running_var"].dtype == jnp.float32


def test_batchnorm_options_and_dtype():
    tree, _ = BatchNorm2d(4, affine=False, track_running_stats=False)
    assert tree["params"] == {} and tree["buffers"] == {}
    assert (
        set(torch.nn.BatchNorm2d(4, affine=False, track_running_stats=False).state_dict()) == set()
    )
    tree, _ = BatchNorm1d(4, momentum=None, eps=1e-3, dtype=jnp.bfloat16, axis_name="batch")
    assert tree["aux"]["momentum"] is None and tree["aux"]["eps"] == 1e-3
    assert tree["aux"]["axis_name"] == "batch"
    assert tree["params"]["weight"].dtype == jnp.bfloat16
    assert tree["buffers"]["running_mean"].dtype == jnp.bfloat16
    assert tree["buffers"]["num_batches_tracked"].dtype == INT_DTYPE


# ---------------------------------------------------------------- BatchNorm: vs torch


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize(
    "kind,shape,affine,bias",
    [("1d", (8, 5), True, True), ("1d", (4, 5, 6), False, True), ("2d", (3, 5, 4, 3), True, False)],
)
def test_batchnorm_matches_torch(kind, shape, affine, bias, train):
    make, make_torch = BN[kind]
    layer = randomize(make_torch(5, affine=affine, bias=bias)).train(train)
    tree, _ = make(5, affine=affine, bias=bias)
    x = normal(shape, seed=1, loc=2.0, scale=3.0)  # an offset mean and a non-unit scale
    new_tree = check_against_torch(tree, {"train_mode": train}, layer, x)
    if train:
        assert int(new_tree["buffers"]["num_batches_tracked"]) == 1
    else:
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            np.testing.assert_array_equal(
                new_tree["buffers"][name], from_torch(layer, tree)["buffers"][name]
            )


@pytest.mark.parametrize(
    "kind,shape,train",
    [("1d", (8, 5), False), ("1d", (4, 5, 6), True), ("2d", (3, 5, 4, 3), False)],
)
def test_batchnorm_without_running_stats_matches_torch(kind, shape, train):
    make, make_torch = BN[kind]
    layer = randomize(make_torch(5, track_running_stats=False)).train(train)
    tree, _ = make(5, track_running_stats=False)
    x = normal(shape, seed=2, loc=-1.0, scale=2.0)
    new_tree = check_against_torch(tree, {"train_mode": train}, layer, x)
    assert new_tree["buffers"] == {}  # eval matched torch: batch statistics there too


@pytest.mark.parametrize(
    "kind,shape,momentum",
    [
        ("1d", (8, 5), 0.1),
        ("1d", (4, 5, 6), None),
        ("2d", (3, 5, 4, 3), 0.3),
        ("2d", (3, 5, 4, 3), None),
    ],
)
def test_batchnorm_running_stats_after_training_match_torch(kind, shape, momentum):
    make, make_torch = BN[kind]
    layer = randomize(make_torch(5, momentum=momentum), seed=3).train()
    tree, config = make(5, momentum=momentum)
    tree = from_torch(layer, tree)
    start = np.asarray(tree["buffers"]["running_mean"])
    state, apply = hax.bind_module(tree, config)
    step = jax.jit(apply)
    for i in range(3):
        x = normal(shape, seed=10 + i, loc=float(i), scale=1.0 + i)
        state, y = step(state, jnp.asarray(x))
        with torch.no_grad():
            y_torch = layer(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(np.asarray(y), y_torch, rtol=1e-5, atol=1e-5)
    tree, _ = hax.unbind_module(state, apply)
    assert int(tree["buffers"]["num_batches_tracked"]) == 3 == int(layer.num_batches_tracked)
    assert tree["buffers"]["num_batches_tracked"].dtype == INT_DTYPE
    assert_buffers_match(tree, layer)
    # the stats moved away from their start (so the comparison above can fail)
    assert not np.allclose(np.asarray(tree["buffers"]["running_mean"]), start, atol=0.1)
    # eval after training uses the trained running stats, as torch's eval
    layer.eval()
    x = normal(shape, seed=20, loc=0.5)
    _, y = jax.jit(apply.bind_global_config({"train_mode": False}))(state, jnp.asarray(x))
    with torch.no_grad():
        np.testing.assert_allclose(
            np.asarray(y), layer(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5
        )


def test_batchnorm_running_stats_carry_no_gradient():
    """A train call then an eval call on the updated buffers, differentiated: as torch, the
    running stats are constants (torch updates them under no_grad)."""
    layer = randomize(torch.nn.BatchNorm1d(3), seed=16)
    tree, _ = BatchNorm1d(3)
    tree = from_torch(layer, tree)
    x = normal((4, 3), seed=17, loc=1.0)
    xt = torch.tensor(x, requires_grad=True)
    layer.train()(xt)
    layer.eval()(xt).sum().backward()

    def f(x):
        new_tree, _ = hax.apply_tree(tree, {"train_mode": True}, x)
        return jnp.sum(hax.apply_tree(new_tree, {"train_mode": False}, x)[1])

    np.testing.assert_allclose(jax.jit(jax.grad(f))(jnp.asarray(x)), xt.grad.numpy(), rtol=1e-5)


def test_batchnorm_momentum_none_is_cumulative_average():
    state, apply = hax.bind_module(*BatchNorm1d(3, momentum=None))
    xs = [normal((6, 3), seed=s, loc=s) for s in range(3)]
    for x in xs:
        state, _ = jax.jit(apply)(state, jnp.asarray(x))
    tree, _ = hax.unbind_module(state, apply)
    # a cumulative average over the initial zeros replaced at step 1: the mean of means
    expected = np.mean([x.mean(0) for x in xs], axis=0)
    np.testing.assert_allclose(np.asarray(tree["buffers"]["running_mean"]), expected, rtol=1e-5)
    expected_var = np.mean([x.var(0, ddof=1) for x in xs], axis=0)  # unbiased
    np.testing.assert_allclose(np.asarray(tree["buffers"]["running_var"]), expected_var, rtol=1e-5)


def test_batchnorm_bfloat16_input():
    tree, config = BatchNorm2d(3)
    x = normal((4, 3, 2, 2), seed=4, loc=1.0)
    new_tree, y = hax.apply_tree(tree, config, jnp.asarray(x, jnp.bfloat16))
    assert y.dtype == jnp.bfloat16
    _, y32 = hax.apply_tree(tree, config, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y32), atol=0.05)
    assert new_tree["buffers"]["running_mean"].dtype == jnp.float32


# ---------------------------------------------------------------- BatchNorm: named axis


def vmapped(apply, out_axes=(None, 0)):
    return jax.jit(jax.vmap(apply, in_axes=(None, 0), out_axes=out_axes, axis_name="batch"))


# chunks=8: per-example calls (each on a batch of 1); chunks=2: calls on 4-example slices
@pytest.mark.parametrize(
    "kind,shape,momentum,chunks",
    [
        ("1d", (8, 5), 0.1, 8),
        ("1d", (8, 5, 3), None, 2),
        ("2d", (8, 5, 3, 2), 0.1, 2),
        ("2d", (8, 5, 3, 2), None, 8),
    ],
)
def test_batchnorm_vmap_named_axis_matches_batched_call(kind, shape, momentum, chunks):
    make, make_torch = BN[kind]
    layer = randomize(make_torch(5), seed=5)
    synced, config = make(5, momentum=momentum, axis_name="batch")
    plain, _ = make(5, momentum=momentum)
    state, apply = hax.bind_module(from_torch(layer, synced), config)
    ref_state, ref_apply = hax.bind_module(from_torch(layer, plain), config)
    step, ref_step = vmapped(apply), jax.jit(ref_apply)
    for i in range(3):  # the running stats after several steps match too
        x = jnp.asarray(normal(shape, seed=30 + i, loc=1.0 + i, scale=2.0))
        state, ys = step(state, x.reshape(chunks, -1, *shape[1:]))
        ref_state, y = ref_step(ref_state, x)
        np.testing.assert_allclose(np.asarray(ys).reshape(shape), np.asarray(y), atol=2e-5)
        for name, value in ref_state.items():
            assert state[name].shape == value.shape and state[name].dtype == value.dtype
            np.testing.assert_allclose(state[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    assert int(state["buffers/num_batches_tracked"]) == 3
    # and the batched call is torch's
    with torch.no_grad():
        np.testing.assert_allclose(
            np.asarray(y), layer(torch.from_numpy(np.array(x))).numpy(), atol=2e-5
        )


def test_batchnorm_vmap_default_out_axes_gives_identical_copies():
    tree, config = BatchNorm1d(4, axis_name="batch")
    state, apply = hax.bind_module(tree, config)
    x = jnp.asarray(normal((6, 4), seed=6, loc=3.0))
    copies, _ = vmapped(apply, out_axes=0)(state, x.reshape(6, 1, 4))
    assert copies["buffers/running_mean"].shape == (6, 4)
    assert copies["buffers/num_batches_tracked"].shape == (6,)
    for value in copies.values():
        np.testing.assert_array_equal(value, jnp.broadcast_to(value[0], value.shape))
    once = jax.tree.map(lambda b: b[0], copies)  # take one copy
    ref_state, ref_apply = hax.bind_module(*BatchNorm1d(4))
    ref_state, _ = jax.jit(ref_apply)(ref_state, x)
    for name, value in ref_state.items():
        np.testing.assert_allclose(once[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_batchnorm_vmap_named_axis_input_gradient():
    tree, config = BatchNorm2d(3, axis_name="batch")
    tree = {**tree, "params": {"weight": jnp.arange(1.0, 4.0), "bias": jnp.ones(3)}}
    state, apply = hax.bind_module(tree, config)
    plain, _ = BatchNorm2d(3)
    ref_state, ref_apply = hax.bind_module({**plain, "params": tree["params"]}, config)
    x = jnp.asarray(normal((4, 3, 2, 2), seed=7, loc=1.0))
    g = jnp.asarray(normal((4, 3, 2, 2), seed=8))

    def loss(x):
        _, ys = jax.vmap(apply, in_axes=(None, 0), out_axes=(None, 0), axis_name="batch")(
            state, x.reshape(4, 1, 3, 2, 2)
        )
        return jnp.sum(ys.reshape(x.shape) * g)

    def ref_loss(x):
        return jnp.sum(ref_apply(ref_state, x)[1] * g)

    grad, ref_grad = jax.jit(jax.grad(loss))(x), jax.jit(jax.grad(ref_loss))(x)
    np.testing.assert_allclose(grad, ref_grad, atol=1e-5)
    assert np.abs(np.asarray(ref_grad)).max() > 0.1


def test_batchnorm_vmap_without_axis_name_uses_per_call_stats():
    """The control for the tests above: without a named axis each call sees only its slice."""
    tree, config = BatchNorm1d(4)
    state, apply = hax.bind_module(tree, config)
    x = jnp.asarray(normal((8, 4), seed=9))
    _, ys = jax.jit(jax.vmap(apply, in_axes=(None, 0)))(state, x.reshape(2, 4, 4))
    _, y = jax.jit(apply)(state, x)
    assert not np.allclose(np.asarray(ys).reshape(8, 4), np.asarray(y), atol=1e-3)


def test_batchnorm_axis_name_outside_a_named_transformation():
    tree, config = BatchNorm1d(4, axis_name="batch")
    with pytest.raises(NameError, match=r"axis_name='batch'.*vmap"):
        hax.apply_tree(tree, config, jnp.ones((3, 4)))
    # eval with running stats needs no collective
    _, y = hax.apply_tree(tree, {"train_mode": False}, jnp.ones((3, 4)))
    np.testing.assert_allclose(y, 1 / np.sqrt(1 + 1e-5), rtol=1e-6)


# ---------------------------------------------------------------- BatchNorm: errors, validate


@pytest.mark.debug_off
@pytest.mark.wrong_types
def test_batchnorm_input_errors():
    tree1, config = BatchNorm1d(4)
    tree2, _ = BatchNorm2d(4)
    with pytest.raises(ValueError, match="2D or 3D"):
        hax.apply_tree(tree1, config, jnp.ones((2, 4, 3, 3)))
    with pytest.raises(ValueError, match="4D"):
        hax.apply_tree(tree2, config, jnp.ones((2, 4, 3)))
    with pytest.raises(ValueError, match="num_features=4"):
        hax.apply_tree(tree1, config, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        hax.apply_tree(tree1, config, jnp.ones((1, 4)))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        torch.nn.BatchNorm1d(4)(torch.ones(1, 4))
    # eval with running stats accepts a single example, as torch
    _, y = hax.apply_tree(tree1, {"train_mode": False}, jnp.ones((1, 4)))
    assert y.shape == (1, 4)


@pytest.mark.debug_off
def test_batchnorm_missing_train_mode():
    tree, _ = BatchNorm2d(3)
    assert hax.validate(tree, {"train_mode": False}) is tree
    with pytest.raises(hax.ValidationError, match=r"global_config\.train_mode") as err:
        hax.validate(tree, {})
    assert "BatchNorm2d" in str(err.value)
    with pytest.raises(KeyError, match="train_mode"):
        hax.apply_tree(tree, {}, jnp.ones((2, 3, 2, 2)))


def test_batchnorm_validate_catches_wrong_shapes():
    tree, config = BatchNorm1d(4)
    bad = {**tree, "buffers": {**tree["buffers"], "running_mean": jnp.zeros(5)}}
    with pytest.raises(hax.ValidationError, match=r"buffers\.running_mean") as err:
        hax.validate(bad, config)
    assert "num_features=4" in str(err.value)
    bad = {**tree, "params": {**tree["params"], "weight": jnp.ones((4, 1))}}
    with pytest.raises(hax.ValidationError, match=r"params\.weight"):
        hax.validate(bad)
    bad = {**tree, "buffers": {**tree["buffers"], "num_batches_tracked": jnp.zeros(())}}
    with pytest.raises(hax.ValidationError, match=r"buffers\.num_batches_tracked"):
        hax.validate(bad)  # a float counter
    model, _ = hax.nn.Sequential(BatchNorm1d(4), (tree, config))
    model["submodules"]["1"] = bad
    with pytest.raises(hax.ValidationError, match=r"1: buffers\.num_batches_tracked"):
        hax.validate(model)


# ---------------------------------------------------------------- LayerNorm


@pytest.mark.parametrize(
    "normalized_shape,shape,affine,bias",
    [
        (5, (5,), True, True),
        (5, (3, 5), True, False),
        ((4, 5), (2, 3, 4, 5), True, True),
        ([3, 2], (3, 2), False, True),
    ],
)
def test_layernorm_matches_torch(normalized_shape, shape, affine, bias):
    layer = randomize(torch.nn.LayerNorm(normalized_shape, elementwise_affine=affine, bias=bias))
    tree, config = LayerNorm(normalized_shape, elementwise_affine=affine, bias=bias)
    assert config == {}
    x = normal(shape, seed=11, loc=1.0, scale=3.0)
    check_against_torch(tree, config, layer, x)


def test_layernorm_init_and_aux():
    tree, _ = LayerNorm(5)
    assert tree["apply"] is layer_norm_apply
    assert tree["aux"] == {
        "normalized_shape": (5,),
        "eps": 1e-5,
        "elementwise_affine": True,
        "bias": True,
    }
    assert LayerNorm([2, 3])[0]["aux"]["normalized_shape"] == (2, 3)
    state = torch.nn.LayerNorm((2, 3)).state_dict()
    tree2, _ = LayerNorm((2, 3), eps=1e-6, dtype=jnp.bfloat16)
    assert tree2["aux"]["eps"] == 1e-6 and tree2["params"]["weight"].dtype == jnp.bfloat16
    for name, value in state.items():
        np.testing.assert_array_equal(np.asarray(tree2["params"][name], np.float32), value)
    assert set(LayerNorm(4, bias=False)[0]["params"]) == {"weight"}
    assert LayerNorm(4, elementwise_affine=False)[0]["params"] == {}
    hax.validate(tree, {})


def test_layernorm_errors_and_validate():
    tree, config = LayerNorm((4, 5))
    with pytest.raises(ValueError, match="normalized_shape"):
        hax.apply_tree(tree, config, jnp.ones((4, 6)))
    bad = {**tree, "params": {**tree["params"], "bias": jnp.zeros((5, 4))}}
    with pytest.raises(hax.ValidationError, match=r"params\.bias"):
        hax.validate(bad)  # weight and bias must agree
    bad_weight = {**tree, "params": {"weight": jnp.ones(5)}}
    with pytest.raises(ValueError, match=r"params\.weight"):  # would broadcast silently
        hax.apply_tree(bad_weight, config, jnp.ones((3, 4, 5)))


def test_layer_norm_function_matches_torch_and_the_layer():
    x = normal((2, 3, 4, 5), seed=21, loc=1.0, scale=2.0)
    weight, bias = normal((4, 5), seed=22), normal((4, 5), seed=23)
    g = normal(x.shape, seed=24)
    for shape, w, b in [((4, 5), weight, bias), (5, weight[0], None), ([4, 5], None, None)]:
        xt, wt, bt = (None if a is None else torch.tensor(a, requires_grad=True) for a in (x, w, b))
        y_torch = torch.nn.functional.layer_norm(xt, list(np.atleast_1d(shape)), wt, bt, 1e-3)
        (y_torch * torch.from_numpy(g)).sum().backward()

        def loss(x, w, b, shape=shape):
            y = F.layer_norm(x, shape, w, b, eps=1e-3)
            return jnp.sum(y * g), y

        args = [jnp.asarray(a) if a is not None else None for a in (x, w, b)]
        (gx, gw, gb), y = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(*args)
        np.testing.assert_allclose(np.asarray(y), y_torch.detach().numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(gx), xt.grad.numpy(), rtol=1e-4, atol=1e-4)
        for ours, t in ((gw, wt), (gb, bt)):
            if t is not None:
                np.testing.assert_allclose(np.asarray(ours), t.grad.numpy(), rtol=1e-4, atol=1e-4)
    tree, config = LayerNorm((4, 5), eps=1e-3)
    tree = {**tree, "params": {"weight": jnp.asarray(weight), "bias": jnp.asarray(bias)}}
    np.testing.assert_array_equal(
        np.asarray(hax.apply_tree(tree, config, jnp.asarray(x))[1]),
        np.asarray(F.layer_norm(x, (4, 5), weight, bias, 1e-3)),
    )
    with pytest.raises(ValueError, match=r"layer_norm: expected an input whose last dims"):
        F.layer_norm(x, (5, 4))
    with pytest.raises(ValueError, match=r"layer_norm: weight has shape \(5,\), expected"):
        F.layer_norm(x, (4, 5), weight[0])


# ---------------------------------------------------------------- InstanceNorm

IN = {
    "1d": (InstanceNorm1d, torch.nn.InstanceNorm1d),
    "2d": (InstanceNorm2d, torch.nn.InstanceNorm2d),
}


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize(
    "affine,track", [(False, False), (True, False), (True, True), (False, True)]
)
@pytest.mark.parametrize(
    "kind,shape", [("1d", (3, 5, 7)), ("1d", (5, 6)), ("2d", (2, 5, 4, 3)), ("2d", (5, 3, 4))]
)
def test_instancenorm_matches_torch(kind, shape, affine, track, train):
    """Batched and unbatched inputs, with and without affine params and running stats,
    in training (running stats updated) and evaluation (running stats used when tracked)."""
    make, make_torch = IN[kind]
    layer = randomize(make_torch(5, affine=affine, track_running_stats=track)).train(train)
    tree, config = make(5, affine=affine, track_running_stats=track)
    assert config == {"train_mode": True}
    x = normal(shape, seed=31, loc=2.0, scale=3.0)
    new_tree = check_against_torch(tree, {"train_mode": train}, layer, x)
    if track:
        assert int(new_tree["buffers"]["num_batches_tracked"]) == 0  # never counted, as torch


@pytest.mark.parametrize("momentum", [0.3, None])
@pytest.mark.parametrize("kind,shape", [("1d", (4, 3, 6)), ("2d", (3, 3, 4, 5))])
def test_instancenorm_running_stats_after_training_match_torch(kind, shape, momentum):
    make, make_torch = IN[kind]
    layer = randomize(make_torch(3, momentum=momentum, track_running_stats=True), seed=5).train()
    tree, config = make(3, momentum=momentum, track_running_stats=True)
    tree = from_torch(layer, tree)
    start = np.asarray(tree["buffers"]["running_mean"])
    state, apply = hax.bind_module(tree, config)
    step = jax.jit(apply)
    for i in range(3):
        x = normal(shape, seed=40 + i, loc=float(i), scale=1.0 + i)
        state, y = step(state, jnp.asarray(x))
        with torch.no_grad():
            y_torch = layer(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(np.asarray(y), y_torch, rtol=1e-5, atol=1e-5)
    tree, _ = hax.unbind_module(state, apply)
    assert_buffers_match(tree, layer)
    moved = not np.allclose(np.asarray(tree["buffers"]["running_mean"]), start, atol=0.1)
    assert moved == (momentum is not None)  # momentum=None: a factor of 0 in torch
    layer.eval()
    x = normal(shape, seed=50, loc=0.5)
    _, y = jax.jit(apply.bind_global_config({"train_mode": False}))(state, jnp.asarray(x))
    with torch.no_grad():
        np.testing.assert_allclose(
            np.asarray(y), layer(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5
        )


def test_instancenorm_init_aux_and_state_dict_names():
    tree, config = InstanceNorm1d(6)
    assert tree["apply"] is instance_norm1d_apply and config == {"train_mode": True}
    assert tree["aux"] == {
        "num_features": 6,
        "eps": 1e-5,
        "momentum": 0.1,
        "affine": False,
        "track_running_stats": False,
    }
    assert tree["params"] == {} and tree["buffers"] == {}
    tree, _ = InstanceNorm2d(6, 1e-3, None, True, True, dtype=jnp.bfloat16)  # torch's order
    assert tree["apply"] is instance_norm2d_apply
    assert tree["aux"]["momentum"] is None and tree["aux"]["eps"] == 1e-3
    state = torch.nn.InstanceNorm2d(6, affine=True, track_running_stats=True).state_dict()
    assert set(state) == set(tree["params"]) | set(tree["buffers"])
    for name, value in state.items():
        ours = tree["params"].get(name, tree["buffers"].get(name))
        np.testing.assert_array_equal(np.asarray(ours, np.float32), value.numpy(), err_msg=name)
    assert tree["params"]["weight"].dtype == jnp.bfloat16
    assert tree["buffers"]["num_batches_tracked"].dtype == INT_DTYPE


@pytest.mark.debug_off
@pytest.mark.wrong_types
def test_instancenorm_input_errors_like_torch():
    tree, config = InstanceNorm1d(4)
    with pytest.raises(ValueError, match=r"InstanceNorm1d: expected 2D \(unbatched\) or 3D"):
        hax.apply_tree(tree, config, jnp.ones((2, 4, 3, 3)))
    with pytest.raises(ValueError, match="Expected more than 1 spatial element"):
        torch.nn.InstanceNorm1d(4)(torch.ones(2, 4, 1))
    with pytest.raises(ValueError, match="expected more than 1 spatial element"):
        hax.apply_tree(tree, config, jnp.ones((2, 4, 1)))
    with pytest.raises(ValueError, match="expected 3D"):
        hax.apply_tree(*InstanceNorm2d(4), jnp.ones((4, 3)))
    # a channel count other than num_features: an error with params or running stats,
    # a warning without (the statistics do not depend on it), as in torch
    with pytest.raises(ValueError, match="num_features=4"):
        hax.apply_tree(*InstanceNorm1d(4, affine=True), jnp.ones((2, 3, 5)))
    with pytest.raises(ValueError, match="num_features=4"):
        hax.apply_tree(*InstanceNorm1d(4, track_running_stats=True), jnp.ones((2, 3, 5)))
    x = normal((2, 3, 5), seed=3)
    with pytest.warns(UserWarning, match="num_features=4"):
        _, y = hax.apply_tree(tree, config, jnp.asarray(x))
    with pytest.warns(UserWarning):
        expected = torch.nn.InstanceNorm1d(4)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(KeyError, match="train_mode"):
        hax.apply_tree(tree, {}, jnp.ones((2, 4, 3)))


def test_instancenorm_converts_from_torch_and_trains_like_it():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(2, 4, 3),
        randomize(torch.nn.InstanceNorm1d(4, affine=True, track_running_stats=True), seed=7),
    )
    tree, config = hax.interop.convert(model)
    assert config == {"train_mode": True}
    assert tree["submodules"]["1"]["apply"] is instance_norm1d_apply
    x = normal((3, 2, 9), seed=8)
    new_tree, y = hax.apply_tree(tree, config, jnp.asarray(x))  # training
    with torch.no_grad():
        expected = model.train()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-5)
    assert_buffers_match(new_tree["submodules"]["1"], model[1])
    _, y_eval = hax.apply_tree(new_tree, {"train_mode": False}, jnp.asarray(x))
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(y_eval), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- RMSNorm


@pytest.mark.parametrize(
    "normalized_shape,shape,eps,affine",
    [
        (6, (6,), None, True),
        (6, (4, 6), 1e-6, True),
        ((3, 4), (2, 3, 4), None, False),
        (6, (2, 2, 6), 0.1, True),
    ],
)
def test_rmsnorm_matches_torch(normalized_shape, shape, eps, affine):
    layer = randomize(torch.nn.RMSNorm(normalized_shape, eps=eps, elementwise_affine=affine))
    tree, config = RMSNorm(normalized_shape, eps=eps, elementwise_affine=affine)
    x = normal(shape, seed=12, loc=0.5, scale=2.0)
    check_against_torch(tree, config, layer, x)


def test_rmsnorm_default_eps_is_the_input_dtype_epsilon():
    # tiny inputs: mean(x^2) ~ 1e-8 is below float32's epsilon, so eps decides the output
    layer = torch.nn.RMSNorm(8)
    tree, config = RMSNorm(8)
    assert tree["aux"] == {"normalized_shape": (8,), "eps": None, "elementwise_affine": True}
    x = normal((3, 8), seed=13, scale=1e-4)
    _, y = hax.apply_tree(tree, config, jnp.asarray(x))
    with torch.no_grad():
        y_torch = layer(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(y), y_torch, rtol=1e-5, atol=1e-7)
    eps = np.finfo(np.float32).eps
    expected = x / np.sqrt((x**2).mean(-1, keepdims=True) + eps)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5)
    rms = np.sqrt((np.asarray(y) ** 2).mean(-1))
    assert rms.max() < 0.5  # eps dominates: far from unit RMS


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_rmsnorm_default_eps_of_half_input_is_float32_epsilon(dtype):
    # PyTorch adds the epsilon of the float32 it computes in, not bfloat16's 2**-7
    layer = torch.nn.RMSNorm(8).to(getattr(torch, dtype))
    tree, config = RMSNorm(8, dtype=dtype)
    x = normal((3, 8), seed=14, scale=1e-3)
    _, y = hax.apply_tree(tree, config, jnp.asarray(x, dtype))
    with torch.no_grad():
        y_torch = layer(torch.from_numpy(x).to(getattr(torch, dtype))).float().numpy()
    assert y.dtype == dtype
    np.testing.assert_allclose(np.asarray(y, np.float32), y_torch, rtol=1e-2, atol=1e-2)


def test_rmsnorm_init_and_validate():
    tree, config = RMSNorm((2, 3), dtype=jnp.float16)
    assert tree["apply"] is rms_norm_apply and config == {}
    assert set(tree["params"]) == set(torch.nn.RMSNorm((2, 3)).state_dict()) == {"weight"}
    np.testing.assert_array_equal(tree["params"]["weight"], np.ones((2, 3), np.float16))
    assert tree["params"]["weight"].dtype == jnp.float16
    assert RMSNorm(3, elementwise_affine=False)[0]["params"] == {}
    bad = {**tree, "params": {"weight": jnp.ones((2, 3), jnp.int32)}}
    with pytest.raises(hax.ValidationError, match=r"params\.weight"):
        hax.validate(bad)
    with pytest.raises(ValueError, match="normalized_shape"):
        hax.apply_tree(tree, config, jnp.ones((3, 2)))


# ---------------------------------------------------------------- GroupNorm


# (N, C) inputs only with groups of several channels: a group of one value is 0/0 noise
@pytest.mark.parametrize(
    "num_groups,shape,affine,bias",
    [
        (3, (3, 6), True, True),
        (2, (2, 6, 5), True, False),
        (6, (2, 6, 3, 4), True, True),
        (2, (2, 6, 3, 4), False, True),
    ],
)
def test_groupnorm_matches_torch(num_groups, shape, affine, bias):
    layer = randomize(torch.nn.GroupNorm(num_groups, 6, affine=affine, bias=bias))
    tree, config = GroupNorm(num_groups, 6, affine=affine, bias=bias)
    x = normal(shape, seed=14, loc=-2.0, scale=3.0)
    check_against_torch(tree, config, layer, x)


def test_groupnorm_init_errors_and_validate():
    tree, config = GroupNorm(2, 4)
    assert tree["apply"] is group_norm_apply and config == {}
    assert tree["aux"] == {
        "num_groups": 2,
        "num_channels": 4,
        "eps": 1e-5,
        "affine": True,
        "bias": True,
    }
    for name, value in torch.nn.GroupNorm(2, 4).state_dict().items():
        np.testing.assert_array_equal(np.asarray(tree["params"][name]), value.numpy())
    assert GroupNorm(2, 4, affine=False)[0]["params"] == {}
    with pytest.raises(ValueError, match="divisible"):
        GroupNorm(3, 4)
    with pytest.raises(ValueError, match="divisible"):
        torch.nn.GroupNorm(3, 4)
    with pytest.raises(ValueError, match="num_channels=4"):
        hax.apply_tree(tree, config, jnp.ones((2, 3, 5)))
    bad = {**tree, "params": {**tree["params"], "weight": jnp.ones(3)}}
    with pytest.raises(hax.ValidationError, match=r"params\.weight") as err:
        hax.validate(bad)
    assert "num_channels=4" in str(err.value)


# ---------------------------------------------------------------- all layers


def test_layers_under_debug_mode():
    """Debug mode checks the apply annotations (jaxtyping) and the tree before and after."""
    modules = [
        (BatchNorm1d(4), (3, 4, 2)),
        (BatchNorm2d(4), (3, 4, 2, 2)),
        (LayerNorm((4, 2)), (3, 4, 2)),
        (RMSNorm(2), (3, 4, 2)),
        (GroupNorm(2, 4), (3, 4, 2)),
        (InstanceNorm1d(4, affine=True, track_running_stats=True), (3, 4, 2)),
        (InstanceNorm2d(4), (4, 2, 3)),
    ]
    for (tree, config), shape in modules:
        x = jnp.asarray(normal(shape, seed=15))
        state, apply = hax.bind_module(tree, config)
        with hax.debug():
            debug_state, debug_apply = hax.bind_module(tree, config)
        new_state, y = jax.jit(apply)(state, x)
        debug_new_state, y_debug = jax.jit(debug_apply)(debug_state, x)
        assert y.shape == shape
        np.testing.assert_array_equal(y_debug, y)
        for name, value in new_state.items():
            np.testing.assert_array_equal(debug_new_state[name], value, err_msg=name)
