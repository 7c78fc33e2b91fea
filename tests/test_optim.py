"""Tests for `hax.optim`: gradients w.r.t. params only, buffers threaded, optax steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_trees_equal

import hax
import hax.optim
from hax import nn


def model(seed=0):
    with hax.rng_context(seed):
        return nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Dropout(0.5), nn.Linear(5, 2))


X = jnp.asarray(np.random.default_rng(0).normal(size=(8, 3)), jnp.float32)
Y = jnp.asarray(np.random.default_rng(1).normal(size=(8, 2)), jnp.float32)


def make_loss(config):
    def loss_fn(tree, batch):
        x, y = batch
        new_tree, out = hax.apply_tree(tree, config, x)
        return jnp.mean((out - y) ** 2), new_tree

    return loss_fn


def test_split_and_merge_params_are_inverse_for_trees_and_bound_states():
    tree, config = model()
    params, rest = hax.optim.split_params(tree)
    assert_trees_equal(hax.optim.merge_params(params, rest), tree)
    assert jax.tree.leaves(params) and all(
        isinstance(v, jax.Array) for v in jax.tree.leaves(params)
    )
    state, _ = hax.bind_module(tree, config)
    flat_params, flat_rest = hax.optim.split_params(state)
    assert set(flat_params) == {
        "0/params/weight",
        "0/params/bias",
        "1/params/weight",
        "1/params/bias",
        "3/params/weight",
        "3/params/bias",
    }
    assert set(flat_rest) == {k for k in state if "/buffers/" in k}
    assert hax.optim.merge_params(flat_params, flat_rest) == state
    with pytest.raises(TypeError, match="structure tree or the flat state"):
        hax.optim.split_params([1, 2])


@hax.organized_apply
def named_params_apply(org, x):
    return org.params(org.lin(x))


@hax.organized_init(named_params_apply)
def NodeNamedParams(org):
    org.lin = nn.Linear(3, 3, rng=0)
    org.params = nn.BatchNorm1d(3)  # a node may be named "params"


def test_a_node_named_params_keeps_its_buffers_out_of_the_params():
    tree, config = NodeNamedParams()
    state, apply = hax.bind_module(tree, config)
    params, rest = hax.optim.split_params(state)
    assert set(params) == {
        "lin/params/weight", "lin/params/bias", "params/params/weight", "params/params/bias"
    }  # fmt: skip
    assert set(rest) == {
        "params/buffers/running_mean", "params/buffers/running_var",
        "params/buffers/num_batches_tracked",
    }  # fmt: skip

    def loss_fn(state, x):
        new_state, out = apply(state, x)
        return jnp.mean(out**2), new_state

    optimizer = optax.sgd(0.1)
    step = jax.jit(hax.optim.train_step(loss_fn, optimizer))
    new_state, _, _ = step(state, optimizer.init(params), X)
    # the buffers advance as BatchNorm says, not by a gradient step
    assert int(new_state["params/buffers/num_batches_tracked"]) == 1
    _, h = hax.apply_tree(tree["submodules"]["lin"], config, X)
    np.testing.assert_allclose(
        new_state["params/buffers/running_mean"], 0.1 * np.mean(h, axis=0), rtol=1e-5, atol=1e-7
    )


def test_dynamic_loss_scale_must_wrap_the_whole_optimizer():
    tree, _ = model()
    config = {"train_mode": False}
    sgd = optax.sgd(0.1)
    params = hax.optim.params_of(tree)
    ref, _, _ = hax.optim.train_step(make_loss(config), sgd)(tree, sgd.init(params), (X, Y))
    outer = hax.optim.dynamic_loss_scale(optax.chain(optax.identity(), sgd))
    step = hax.optim.train_step(make_loss(config), outer)
    new_tree, _, metrics = step(tree, outer.init(params), (X, Y))
    assert bool(metrics["grads_finite"])
    for (name, a), (_, b) in zip(
        hax.named_leaves(new_tree, ["params"]), hax.named_leaves(ref, ["params"]), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=name)
    # nested, the loss would not be scaled while the gradients are divided by 2**15
    inner = optax.chain(optax.identity(), hax.optim.dynamic_loss_scale(sgd))
    step = hax.optim.train_step(make_loss(config), inner)
    with pytest.raises(TypeError, match="must wrap the whole optimizer"):
        step(tree, inner.init(params), (X, Y))


def test_value_and_grad_matches_finite_differences_and_skips_buffers():
    tree, config = model()
    config = {"train_mode": False}  # deterministic: dropout off, running stats used
    loss_fn = make_loss(config)
    (loss, new_tree), grads = hax.optim.value_and_grad(loss_fn)(tree, (X, Y))
    assert set(grads) == {"params", "submodules"}  # params only: no buffers, aux, apply
    assert_trees_equal(new_tree, tree)
    # central differences on one weight entry
    w = tree["submodules"]["0"]["params"]["weight"]
    eps = 1e-2

    def at(delta):
        t = hax.set_subtree(
            tree,
            "0",
            {
                **tree["submodules"]["0"],
                "params": {**tree["submodules"]["0"]["params"], "weight": w.at[1, 2].add(delta)},
            },
        )
        return float(loss_fn(t, (X, Y))[0])

    fd = (at(eps) - at(-eps)) / (2 * eps)
    np.testing.assert_allclose(grads["submodules"]["0"]["params"]["weight"][1, 2], fd, rtol=2e-3)
    np.testing.assert_allclose(loss, loss_fn(tree, (X, Y))[0])


def test_value_and_grad_on_a_bound_state_equals_the_tree_route():
    tree, config = model()
    state, apply = hax.bind_module(tree, config)

    def bound_loss(state, batch):
        new_state, out = apply(state, batch[0])
        return jnp.mean((out - batch[1]) ** 2), new_state

    (l1, _), g_tree = hax.optim.value_and_grad(make_loss(config))(tree, (X, Y))
    (l2, _), g_flat = jax.jit(hax.optim.value_and_grad(bound_loss))(state, (X, Y))
    np.testing.assert_allclose(l1, l2, rtol=1e-6)
    for name, leaf in hax.named_leaves(g_tree, ["params"]):
        np.testing.assert_allclose(g_flat[name], leaf, rtol=1e-5, atol=1e-7, err_msg=name)


def test_loss_function_contract_errors():
    tree, _ = model()
    with pytest.raises(TypeError, match=r"\(loss, new_state\)"):
        hax.optim.value_and_grad(lambda t, b: jnp.sum(b))(tree, X)
    with pytest.raises(TypeError, match=r"\(new_state, aux\)"):
        hax.optim.value_and_grad(lambda t, b: (jnp.sum(b), t), has_aux=True)(tree, X)


def test_train_step_threads_buffers_and_eval_is_deterministic():
    tree, config = model()
    optimizer = optax.sgd(0.1)
    opt_state = optimizer.init(hax.optim.params_of(tree))
    step = hax.jit(hax.optim.train_step(make_loss(config), optimizer))
    bn0 = tree["submodules"]["1"]["buffers"]
    key0 = jax.random.key_data(tree["submodules"]["2"]["buffers"]["rng"])
    new_tree, opt_state, metrics = step(tree, opt_state, (X, Y))
    bn1 = new_tree["submodules"]["1"]["buffers"]
    key1 = jax.random.key_data(new_tree["submodules"]["2"]["buffers"]["rng"])
    assert int(bn1["num_batches_tracked"]) == 1
    assert not np.allclose(bn1["running_mean"], bn0["running_mean"])
    assert not np.array_equal(key1, key0)  # the dropout key advanced
    assert not np.allclose(
        new_tree["submodules"]["0"]["params"]["weight"], tree["submodules"]["0"]["params"]["weight"]
    )
    assert set(metrics) == {"loss"}
    # a second step uses the advanced key: a different dropout mask, another key
    tree2, _, _ = step(new_tree, opt_state, (X, Y))
    key2 = jax.random.key_data(tree2["submodules"]["2"]["buffers"]["rng"])
    assert not np.array_equal(key2, key1)
    # eval mode: two runs of the trained model agree exactly and leave buffers alone
    eval_config = {"train_mode": False}
    t_a, out_a = hax.apply_tree(tree2, eval_config, X)
    _, out_b = hax.apply_tree(tree2, eval_config, X)
    np.testing.assert_array_equal(out_a, out_b)
    assert_trees_equal(t_a, tree2)


def test_train_step_equals_a_hand_written_optax_loop_and_bound_route():
    tree, config = model()
    loss_fn = make_loss(config)
    optimizer = optax.sgd(
        0.1, momentum=0.9
    )  # not adam: it amplifies the ~0 gradient of a bias before BatchNorm
    step = hax.jit(hax.optim.train_step(loss_fn, optimizer))
    t, s = tree, optimizer.init(hax.optim.params_of(tree))
    # by hand: split, grad, update, merge
    h, hs = tree, optimizer.init(hax.split_tree(tree, ["params"])[0])
    state, apply = hax.bind_module(tree, config)

    def bound_loss(state, batch):
        new_state, out = apply(state, batch[0])
        return jnp.mean((out - batch[1]) ** 2), new_state

    bstep = jax.jit(hax.optim.train_step(bound_loss, optimizer))
    b, bs = state, optimizer.init(hax.optim.params_of(state))
    for _ in range(3):
        t, s, m = step(t, s, (X, Y))
        b, bs, bm = bstep(b, bs, (X, Y))
        params, rest = hax.split_tree(h, ["params"])
        (loss, new_h), grads = jax.value_and_grad(
            lambda p, rest=rest: loss_fn(hax.merge_trees(p, rest), (X, Y)), has_aux=True
        )(params)
        updates, hs = optimizer.update(grads, hs, params)
        h = hax.merge_trees(
            optax.apply_updates(params, updates), hax.split_tree(new_h, ["params"])[1]
        )
        np.testing.assert_allclose(m["loss"], loss, rtol=1e-6)
        np.testing.assert_allclose(bm["loss"], loss, rtol=1e-5)
    t_leaves = dict(hax.named_leaves(t, ["params"]))
    for name, leaf in hax.named_leaves(h, ["params"]):
        np.testing.assert_allclose(t_leaves[name], leaf, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(b[name], leaf, rtol=1e-5, atol=1e-6, err_msg=name)


def test_has_aux_metrics_and_traced_learning_rate():
    tree, config = model()

    def loss_fn(tree, batch):
        new_tree, out = hax.apply_tree(tree, config, batch[0])
        loss = jnp.mean((out - batch[1]) ** 2)
        return loss, (new_tree, {"mae": jnp.mean(jnp.abs(out - batch[1]))})

    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=jnp.asarray(0.1))
    opt_state = optimizer.init(hax.optim.params_of(tree))
    traces = []

    def counted(tree, opt_state, batch):
        traces.append(1)
        return hax.optim.train_step(loss_fn, optimizer, has_aux=True)(tree, opt_state, batch)

    step = hax.jit(counted)
    t1, _, m1 = step(tree, opt_state, (X, Y))
    assert set(m1) == {"loss", "mae"}
    opt_state.hyperparams["learning_rate"] = jnp.zeros((), jnp.float32)
    t0, _, _ = step(tree, opt_state, (X, Y))
    assert len(traces) == 1  # the learning rate is an array in opt_state: no retrace
    w = ("submodules", "0", "params", "weight")

    def get(t):
        return t[w[0]][w[1]][w[2]][w[3]]

    np.testing.assert_array_equal(get(t0), get(tree))  # lr 0: params unchanged
    assert not np.allclose(get(t1), get(tree))
    with pytest.raises(TypeError, match="must be a dict"):
        hax.optim.train_step(lambda t, b: (jnp.sum(b[0]), (t, 1.0)), optimizer, has_aux=True)(
            tree, opt_state, (X, Y)
        )
