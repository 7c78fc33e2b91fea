"""Tests for `hax.meta`: hypergradients through unrolled training, and SGD-HD."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hax
import hax.meta
import hax.optim
from hax import nn

K = 5  # unrolled steps
# XLA's CPU backend compiles about twice as fast without LLVM optimisations.
FAST = {"compiler_options": {"xla_backend_optimization_level": 0}}


def tanh_apply(tree, config, x):
    return tree, jnp.tanh(x)


def regression(dtype, seed=0):
    """A 3-8-1 MLP and K training batches plus a validation batch of y = sin(x.w)."""
    with hax.rng_context(seed):
        tree, config = nn.Sequential(
            nn.Linear(3, 8, dtype=dtype),
            (hax.empty_tree(tanh_apply), {}),
            nn.Linear(8, 1, dtype=dtype),
        )
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(3, 1))
    xs = rng.normal(size=(K + 1, 16, 3))
    ys = np.sin(xs @ w)
    xs, ys = jnp.asarray(xs, dtype), jnp.asarray(ys, dtype)

    def loss_fn(tree, batch):
        new_tree, out = hax.apply_tree(tree, config, batch[0])
        return jnp.mean((out - batch[1]) ** 2), new_tree

    return tree, loss_fn, (xs[:K], ys[:K]), (xs[K], ys[K])


def val_of(loss_fn):
    return lambda tree, batch: loss_fn(tree, batch)[0]


def central_difference(f, x, eps):
    return (f(x + eps) - f(x - eps)) / (2 * eps)


def test_learning_rate_hypergradient_matches_finite_differences_in_float64():
    with jax.enable_x64(True):
        tree, loss_fn, train, val = regression(jnp.float64)
        fn = hax.jit(hax.meta.hypergradient(hax.meta.sgd_step(loss_fn), val_of(loss_fn)), **FAST)
        lr = jnp.asarray(0.3, jnp.float64)
        loss, grads = fn({"learning_rate": lr}, tree, train, val)

        def val_at(lr):
            return float(fn({"learning_rate": lr}, tree, train, val)[0])

        fd = central_difference(val_at, lr, 1e-5)
        assert grads["learning_rate"].dtype == jnp.float64
        assert abs(float(grads["learning_rate"]) - fd) <= 1e-3 * abs(fd)
        assert abs(fd) > 1e-3  # the test is not comparing two zeros

        # the loss is the validation loss after K steps done by hand
        @hax.jit
        def by_hand(t, lr):
            for i in range(K):
                (_, _), g = hax.optim.value_and_grad(loss_fn)(t, (train[0][i], train[1][i]))
                params, rest = hax.split_tree(t, ["params"])
                t = hax.merge_trees(jax.tree.map(lambda p, g: p - lr * g, params, g), rest)
            return val_of(loss_fn)(t, val)

        np.testing.assert_allclose(loss, by_hand(tree, lr), rtol=1e-10)


def test_weight_decay_and_per_layer_rates_match_finite_differences():
    with jax.enable_x64(True):
        tree, loss_fn, train, val = regression(jnp.float64, seed=1)
        fn = hax.jit(hax.meta.hypergradient(hax.meta.sgd_step(loss_fn), val_of(loss_fn)), **FAST)
        rates = hax.meta.layer_rates(tree, 0.2)
        assert set(rates) == {"0", "2"}
        hyper = {"learning_rate": rates, "weight_decay": jnp.asarray(0.01, jnp.float64)}
        _, grads = fn(hyper, tree, train, val)
        for name, path in (("layer 2", ("learning_rate", "2")), ("wd", ("weight_decay",))):

            def val_at(v, path=path):
                h = {"learning_rate": dict(rates), "weight_decay": hyper["weight_decay"]}
                if len(path) == 2:
                    h["learning_rate"][path[1]] = v
                else:
                    h["weight_decay"] = v
                return float(fn(h, tree, train, val)[0])

            x0 = rates[path[1]] if len(path) == 2 else hyper["weight_decay"]
            g = grads[path[0]][path[1]] if len(path) == 2 else grads[path[0]]
            fd = central_difference(val_at, x0, 1e-5)
            assert abs(float(g) - fd) <= 1e-3 * abs(fd), name


def test_checkpointing_does_not_change_the_hypergradient_and_bound_states_work():
    tree, loss_fn, train, val = regression(jnp.float32)
    step = hax.meta.sgd_step(loss_fn)
    hyper = {"learning_rate": jnp.asarray(0.1)}
    with_ckpt = hax.jit(hax.meta.hypergradient(step, val_of(loss_fn), checkpoint=True), **FAST)
    without = hax.jit(hax.meta.hypergradient(step, val_of(loss_fn), checkpoint=False), **FAST)
    a, b = with_ckpt(hyper, tree, train, val), without(hyper, tree, train, val)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
    np.testing.assert_allclose(a[1]["learning_rate"], b[1]["learning_rate"], rtol=1e-5)
    # the same through a bound state and jax.jit
    config = {}
    state, apply = hax.bind_module(tree, config)

    def bound_loss(state, batch):
        new_state, out = apply(state, batch[0])
        return jnp.mean((out - batch[1]) ** 2), new_state

    c = jax.jit(hax.meta.hypergradient(hax.meta.sgd_step(bound_loss), val_of(bound_loss)), **FAST)(
        {"learning_rate": hax.meta.layer_rates(state, 0.1)}, state, train, val
    )
    np.testing.assert_allclose(c[0], a[0], rtol=1e-5)
    np.testing.assert_allclose(
        sum(c[1]["learning_rate"].values()), a[1]["learning_rate"], rtol=1e-4
    )


def test_unroll_threads_buffers_and_checks_the_step():
    with hax.rng_context(0):
        tree, config = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.2))
    xs = jnp.ones((K, 8, 3)) * jnp.arange(8.0)[None, :, None]

    def loss_fn(tree, x):
        new_tree, out = hax.apply_tree(tree, config, x)
        return jnp.mean(out**2), new_tree

    final = hax.jit(hax.meta.unroll, **FAST)(
        hax.meta.sgd_step(loss_fn), tree, {"learning_rate": 0.01}, xs
    )
    assert int(final["submodules"]["1"]["buffers"]["num_batches_tracked"]) == K
    assert not np.array_equal(
        jax.random.key_data(final["submodules"]["2"]["buffers"]["rng"]),
        jax.random.key_data(tree["submodules"]["2"]["buffers"]["rng"]),
    )
    with pytest.raises(ValueError, match="same form"):
        hax.meta.unroll(lambda s, h, b: {**s, "aux": {"changed": 1}}, tree, None, xs)
    with pytest.raises(KeyError, match="no entry for the node '1'"):
        hax.jit(hax.meta.sgd_step(loss_fn))(tree, {"learning_rate": {"0": 0.1}}, xs[0])


def train_val_loss(tree, loss_fn, train, val, lr, epochs=3):
    step = hax.meta.sgd_step(loss_fn)
    for _ in range(epochs):
        tree = hax.meta.unroll(step, tree, {"learning_rate": lr}, train)
    return float(loss_fn(tree, val)[0])


def test_meta_gradient_descent_fixes_a_bad_learning_rate():
    tree, loss_fn, train, val = regression(jnp.float32, seed=2)
    fn = hax.jit(hax.meta.hypergradient(hax.meta.sgd_step(loss_fn), val_of(loss_fn)), **FAST)
    log_lr = jnp.log(jnp.asarray(1e-3))  # far too small
    before = float(fn({"learning_rate": jnp.exp(log_lr)}, tree, train, val)[0])
    for _ in range(20):
        _, g = fn({"learning_rate": jnp.exp(log_lr)}, tree, train, val)
        log_lr = log_lr - 1.0 * jnp.sign(g["learning_rate"])  # signed steps in log space
    after = float(fn({"learning_rate": jnp.exp(log_lr)}, tree, train, val)[0])
    assert float(jnp.exp(log_lr)) > 1e-2
    assert after < 0.7 * before


def test_online_hypergradient_descent_raises_a_too_small_learning_rate():
    tree, loss_fn, train, val = regression(jnp.float32, seed=3)
    batch = (train[0].reshape(-1, 3), train[1].reshape(-1, 1))  # full-batch descent

    def run(optimizer):
        t, s = tree, optimizer.init(hax.optim.params_of(tree))
        step = hax.jit(hax.optim.train_step(loss_fn, optimizer))
        for _ in range(100):
            t, s, _ = step(t, s, batch)
        return float(loss_fn(t, val)[0]), s

    plain, _ = run(optax.sgd(1e-3))
    adapted, state = run(hax.meta.hypergradient_sgd(1e-3, hyper_learning_rate=1e-2))
    assert float(state.learning_rate) > 1e-2  # it grew by more than an order of magnitude
    assert adapted < 0.9 * plain
