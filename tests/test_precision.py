"""Tests for mixed precision (`hax.precision`) and dynamic loss scaling."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_trees_equal

import hax
import hax.optim
import hax.precision
from hax import nn

SEEN = []


def spy_apply(tree, config, x):
    """Records the dtypes it computes with (at trace time), then is the identity."""
    SEEN.append((x.dtype, tree["params"]["w"].dtype))
    return tree, x * tree["params"]["w"]


def spy(n):
    return ({**hax.empty_tree(spy_apply), "params": {"w": jnp.ones((n,))}}, {})


def model(seed=0):
    with hax.rng_context(seed):
        return nn.Sequential(
            nn.Linear(4, 8), spy(8), nn.LayerNorm(8), nn.BatchNorm1d(8), nn.Linear(8, 3)
        )


X = jnp.asarray(np.random.default_rng(0).normal(size=(16, 4)), jnp.float32)


def test_policy_checks_and_normalises_dtypes():
    p = hax.precision.Policy(compute_dtype=jnp.bfloat16)
    assert p == hax.precision.Policy(compute_dtype="bfloat16") and hash(p)
    with pytest.raises(TypeError, match="floating"):
        hax.precision.Policy(compute_dtype="int32")
    with pytest.raises(TypeError, match="not a dtype"):
        hax.precision.Policy(compute_dtype="fp-what")


def test_bfloat16_compute_float32_params_norms_and_outputs():
    tree, config = model()
    policy = hax.precision.Policy(compute_dtype="bfloat16")
    mixed = hax.precision.mixed_precision(tree, policy)
    SEEN.clear()
    new_tree, out = hax.apply_tree(mixed, config, X)
    assert SEEN == [(jnp.bfloat16, jnp.bfloat16)]  # the middle of the model runs in bf16
    assert out.dtype == jnp.float32
    # params, buffers and applies come back as stored: float32, same structure
    for (name, a), (_, b) in zip(hax.named_leaves(new_tree), hax.named_leaves(mixed), strict=True):
        assert a.dtype == b.dtype, name
    assert new_tree["apply"] is mixed["apply"]
    assert [c["apply"] for c in new_tree["submodules"].values()] == [
        c["apply"] for c in tree["submodules"].values()
    ]
    assert int(new_tree["submodules"]["3"]["buffers"]["num_batches_tracked"]) == 1
    _, ref = hax.apply_tree(tree, config, X)
    np.testing.assert_allclose(out, ref, atol=0.1, rtol=0.05)  # bf16 has ~3 significant digits
    assert not np.array_equal(out, ref)


def test_norm_layers_and_aux_overrides_compute_in_float32():
    recorded = []

    def record_apply(tree, config, x):
        recorded.append(x.dtype)
        return tree, x

    def recorder(**aux):
        return ({**hax.empty_tree(record_apply), "aux": aux}, {})

    with hax.rng_context(0):
        tree, config = nn.Sequential(
            recorder(),  # follows the policy
            recorder(compute_dtype="float32"),  # overridden through aux
            nn.Sequential(recorder())[0],  # inside a Sequential: follows the policy
        )
    mixed = hax.precision.mixed_precision(tree, hax.precision.Policy(compute_dtype="float16"))
    hax.apply_tree(mixed, config, X)
    assert recorded == [jnp.float16, jnp.float32, jnp.float16]
    # applies listed in float32_applies (by default LayerNorm, BatchNorm, softmax...)
    recorded.clear()
    kept = hax.precision.mixed_precision(
        tree, hax.precision.Policy(compute_dtype="float16"), float32_applies={record_apply}
    )
    hax.apply_tree(kept, config, X)
    assert recorded == [jnp.float32] * 3
    assert nn.layer_norm_apply in hax.precision.FLOAT32_APPLIES


def test_gradients_are_float32_and_close_to_full_precision():
    tree, config = model()
    config = {"train_mode": False}
    mixed = hax.precision.mixed_precision(tree, hax.precision.Policy(compute_dtype="bfloat16"))

    def loss(params, rest):
        return jnp.mean(hax.apply_tree(hax.merge_trees(params, rest), config, X)[1] ** 2)

    g_mixed = jax.grad(loss)(*hax.split_tree(mixed, ["params"]))
    g_full = jax.grad(loss)(*hax.split_tree(tree, ["params"]))
    for (name, a), (_, b) in zip(
        hax.named_leaves(g_mixed, ["params"]), hax.named_leaves(g_full, ["params"]), strict=True
    ):
        assert a.dtype == jnp.float32, name
        np.testing.assert_allclose(a, b, atol=0.05 * float(jnp.abs(b).max()) + 1e-6, err_msg=name)


def test_rebuilding_the_same_policy_does_not_retrace_and_reapplying_replaces_it():
    tree, config = model()
    traces = []

    def run(tree, x):
        traces.append(1)
        return hax.apply_tree(tree, config, x)

    f = hax.jit(run)
    policy = hax.precision.Policy(compute_dtype="bfloat16")
    f(hax.precision.mixed_precision(tree, policy), X)
    f(hax.precision.mixed_precision(tree, hax.precision.Policy(compute_dtype="bfloat16")), X)
    assert len(traces) == 1
    twice = hax.precision.mixed_precision(
        hax.precision.mixed_precision(tree, policy), hax.precision.Policy()
    )
    assert twice["apply"].inner is tree["apply"]
    assert twice["apply"].policy == hax.precision.Policy()


def test_apply_returns_the_stored_params_not_rounded_copies():
    tree, config = model()
    mixed = hax.precision.mixed_precision(tree, hax.precision.Policy(compute_dtype="bfloat16"))
    eval_config = {**config, "train_mode": False}
    for run in (hax.apply_tree, hax.jit(hax.apply_tree)):
        new_tree, _ = run(mixed, eval_config, X)
        # float32 params survive a bfloat16 forward pass bit for bit
        assert_trees_equal(new_tree, mixed)


def identity_wrap(inner, tree, config, *args):
    return inner(tree, config, *args)


def test_wrapped_nodes_keep_the_policy():
    tree, config = model()
    mixed = hax.precision.mixed_precision(tree, hax.precision.Policy(compute_dtype="bfloat16"))
    _, ref = hax.apply_tree(mixed, config, X)
    # the root (the policy itself) under a wrap or a capture
    _, out = hax.apply_tree(hax.surgery.wrap(mixed, "", identity_wrap), config, X)
    np.testing.assert_array_equal(out, ref)
    _, out, captured = hax.surgery.intermediates(mixed, config, "", X)
    np.testing.assert_array_equal(out, ref)
    (root_out,) = captured[""]
    assert root_out.dtype == jnp.float32
    # a wrapped LayerNorm still computes in float32, as unwrapped
    seen = []

    def record(inner, tree, config, x):
        seen.append((x.dtype, tree["params"]["weight"].dtype))
        return inner(tree, config, x)

    hax.apply_tree(hax.surgery.wrap(mixed, "2", record), config, X)
    assert seen == [(jnp.float32, jnp.float32)]


def test_a_wrapped_float32_node_passes_debug_mode():
    """The node a policy runs in float32 keeps its own apply through a wrap."""
    tree, config = model()
    mixed = hax.precision.mixed_precision(tree, hax.precision.Policy(compute_dtype=jnp.bfloat16))
    wrapped = hax.surgery.wrap(mixed, "2", identity_wrap)  # the LayerNorm
    _, ref = hax.apply_tree(wrapped, config, X)
    with hax.debug():
        _, out = hax.apply_tree(wrapped, config, X)
    np.testing.assert_array_equal(out, ref)


def regression_data(n=64):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x @ rng.normal(size=(4, 3))).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y)


def test_float16_dynamic_loss_scaling_recovers_from_overflow():
    tree, config = model()
    mixed = hax.precision.mixed_precision(tree, hax.precision.Policy(compute_dtype="float16"))
    x, y = regression_data()

    def loss_fn(tree, batch):
        new_tree, out = hax.apply_tree(tree, config, batch[0])
        return jnp.mean((out - batch[1]) ** 2), new_tree

    # 2**24 overflows float16 gradients (max ~65504) at once.
    optimizer = hax.optim.dynamic_loss_scale(
        optax.sgd(0.05), initial_scale=2.0**24, period=5, factor=2.0
    )
    opt_state = optimizer.init(hax.optim.params_of(mixed))
    step = hax.jit(hax.optim.train_step(loss_fn, optimizer))
    t, s = mixed, opt_state
    skipped, scales, losses = [], [], []
    for i in range(40):
        batch = (x * 300.0, y) if i == 25 else (x, y)  # an injected overflow at step 25
        new_t, s, m = step(t, s, batch)
        if not bool(m["grads_finite"]):
            assert_trees_equal(new_t, t)  # a skipped step changes nothing, buffers included
        t = new_t
        skipped.append(not bool(m["grads_finite"]))
        scales.append(float(m["loss_scale"]))
        losses.append(float(m["loss"]))
    first_ok = skipped.index(False)
    assert first_ok > 0 and all(skipped[:first_ok])  # overflowed, then recovered
    assert scales[first_ok - 1] < 2.0**24  # by lowering the scale
    assert skipped[25] and not any(skipped[26:])  # the injected overflow was skipped alone
    assert scales[25] == scales[24] / 2
    assert max(scales[first_ok:25]) > scales[first_ok]  # grew again after `period` good steps
    assert losses[-1] < 0.5 * losses[first_ok]  # and it trains
    for name, leaf in hax.named_leaves(t, ["params"]):
        assert leaf.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(leaf))), name


def test_surgery_and_validate_see_through_the_policy_at_the_root():
    with hax.rng_context(0):
        tree, config = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    policy = hax.precision.Policy(compute_dtype="bfloat16")
    mixed = hax.precision.mixed_precision(tree, policy)
    assert hax.surgery.paths(mixed, hax.surgery.select(mixed, kind=nn.Sequential)) == [()]

    removed = hax.surgery.remove(mixed, "1")  # a Sequential's child, under the policy
    expected = hax.precision.mixed_precision(hax.surgery.remove(tree, "1"), policy)
    x = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
    _, out = hax.apply_tree(removed, config, x)
    _, want = hax.apply_tree(expected, config, x)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(want))
    assert removed["apply"] == mixed["apply"]

    with hax.rng_context(0):
        linear, _ = nn.Linear(4, 3)
    bad = hax.precision.mixed_precision(linear, policy)
    bad = {**bad, "params": {**bad["params"], "bias": jnp.zeros(2)}}
    expected_bias = r"params\.bias: expected shape \(out_features=3,\)"
    with pytest.raises(hax.ValidationError, match=expected_bias):
        hax.validate(bad)
