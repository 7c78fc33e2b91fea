"""Tests for `MultiheadAttention` and `functional.scaled_dot_product_attention`, with
PyTorch as the reference.

Speed: the parity cases run as ONE jitted program (XLA's compile time is largely a
fixed cost per program), and layers whose params are replaced by PyTorch's are built
under `jax.eval_shape` (their random init would compile once per param shape).
"""

import itertools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import hax
from hax.nn import MultiheadAttention, functional as F, multihead_attention_apply

# XLA's CPU backend compiles about twice as fast without LLVM optimisations; the
# results are the same to the tolerances used here.
FAST_COMPILE = {"xla_backend_optimization_level": 0}

E, H = 8, 2  # embed_dim, num_heads of every parity case
L, S, N = 4, 5, 3  # target length, source length, batch
TRAIN, EVAL = {"train_mode": True}, {"train_mode": False}


# ---------------------------------------------------------------- helpers


def torch_name(leaf_name):
    """A HAX leaf name as PyTorch's `state_dict` key: `"a/b/params/w"` -> `"a.b.w"`."""
    return ".".join(part for part in leaf_name.split("/") if part != "params")


def torch_state(torch_module):
    return {k: jnp.asarray(v.detach().numpy().copy()) for k, v in torch_module.state_dict().items()}


def with_params(tree, flat):
    """`tree` with its params replaced from `flat`, keyed by PyTorch's `state_dict`
    names (`"out_proj.weight"` is the param `weight` of the submodule `out_proj`)."""
    flat = dict(flat)

    def fill(node, path):
        prefix = "".join(f"{name}." for name in path)
        params = {}
        for name, old in node["params"].items():
            new = flat.pop(prefix + name)
            assert new.shape == old.shape, prefix + name  # no reshaping needed
            params[name] = new
        return {**node, "params": params}

    new_tree = hax.structure_tree_map(fill, tree)
    assert not flat, f"torch entries without a HAX param: {sorted(flat)}"
    return new_tree


def abstract_module(make):
    """The module `make()` returns, built under `jax.eval_shape`: every leaf is a
    `jax.ShapeDtypeStruct` and nothing is compiled."""
    box = {}

    def state():
        state, box["apply"] = hax.bind_module(*make())
        return state

    return hax.unbind_module(jax.eval_shape(state), box["apply"])


def hax_module(make, torch_module, seed=0):
    """`make()`'s module holding `torch_module`'s params and fresh PRNG keys."""
    tree, config = abstract_module(make)
    seeds = itertools.count(seed)

    def keys(node, path):
        assert all(jnp.issubdtype(b.dtype, jax.dtypes.prng_key) for b in node["buffers"].values())
        return {**node, "buffers": {k: jax.random.key(next(seeds)) for k in node["buffers"]}}

    return with_params(hax.structure_tree_map(keys, tree), torch_state(torch_module)), config


def random_masks(rng, kinds, batch, tgt, src):
    """Masks that never hide every key of a query (key 0 is always allowed).

    `kinds`: `attn2`/`attn3` (2D or 3D attn_mask, bool unless `float`), `kpm`/`fkpm`
    (bool or float key_padding_mask), `causal`/`causal_bool`; `batch=None`: unbatched.
    """
    masks = {}
    if "causal" in kinds:
        mask = np.array(hax.nn.generate_square_subsequent_mask(tgt))
        masks["attn_mask"] = np.isinf(mask) if "causal_bool" in kinds else mask
    if "attn2" in kinds or "attn3" in kinds:
        shape = (tgt, src) if "attn2" in kinds else ((batch or 1) * H, tgt, src)
        hide = rng.random(shape) < 0.4
        hide[..., 0] = False
        if "float" in kinds:
            masks["attn_mask"] = np.where(hide, -np.inf, rng.normal(size=shape)).astype(np.float32)
        else:
            masks["attn_mask"] = hide
    if "kpm" in kinds:
        hide = rng.random((batch, src) if batch else (src,)) < 0.4
        hide[..., 0] = False
        masks["key_padding_mask"] = (
            np.where(hide, -np.inf, 0.0).astype(np.float32) if "fkpm" in kinds else hide
        )
    return masks


def prepare(torch_fn, torch_params, hax_fn, arrays, masks, call, shared=1):
    """Run `torch_fn` on `arrays` (each passed `shared` times: self-attention) and
    backpropagate `sum(out_i * r_i)` over its outputs; set up the same loss for
    `hax_fn(params, *inputs, **kwargs)`. Returns `(loss, args, reference)` for
    `run_cases` and `compare`."""
    xs = [torch.from_numpy(a).requires_grad_(True) for a in arrays]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation of mixed mask types
        out = torch_fn(*xs * shared, **{k: torch.from_numpy(v) for k, v in masks.items()}, **call)
    outs = out if isinstance(out, tuple) else (out,)
    rng = np.random.default_rng(7)
    rs = [None if o is None else rng.normal(size=tuple(o.shape)).astype(np.float32) for o in outs]
    total = sum(
        (o * torch.from_numpy(r)).nan_to_num().sum()
        for o, r in zip(outs, rs, strict=True)
        if o is not None
    )
    total.backward()
    reference = {
        "outs": [None if o is None else o.detach().numpy() for o in outs],
        "x_grads": [x.grad.numpy() for x in xs],
        "param_grads": {n: p.grad.numpy() for n, p in torch_params.items()},
    }

    def loss(params, xs, masks, rs):
        out = hax_fn(params, *xs * shared, **masks, **call)
        outs = out if isinstance(out, tuple) else (out,)
        total = sum(
            jnp.nan_to_num(o * r).sum() for o, r in zip(outs, rs, strict=True) if o is not None
        )
        return total, outs

    args = (
        {n: jnp.asarray(p.detach().numpy().copy()) for n, p in torch_params.items()},
        [jnp.asarray(a) for a in arrays],
        {k: jnp.asarray(v) for k, v in masks.items()},
        [None if r is None else jnp.asarray(r) for r in rs],
    )
    return loss, args, reference


def run_cases(cases):
    """Every case's outputs and gradients (params, inputs) in ONE jitted program."""

    def all_cases(args):
        return {
            name: jax.grad(loss, argnums=(0, 1), has_aux=True)(*args[name])
            for name, (loss, _, _) in cases.items()
        }

    return jax.jit(all_cases, compiler_options=FAST_COMPILE)(
        {name: args for name, (_, args, _) in cases.items()}
    )


def compare(result, reference):
    """Outputs within 1e-5 of torch's (relative to their scale; NaN where torch's is),
    gradients of the inputs and of every param within 1e-4."""
    (g_params, g_xs), outs = result
    assert len(outs) == len(reference["outs"])
    for out, ref in zip(outs, reference["outs"], strict=True):
        if ref is None:
            assert out is None
            continue
        assert out.shape == ref.shape
        scale = max(1.0, float(np.nan_to_num(np.abs(ref), posinf=0).max()))
        np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5 * scale, rtol=1e-5)
    for g, ref in zip(g_xs, reference["x_grads"], strict=True):
        np.testing.assert_allclose(np.asarray(g), ref, atol=1e-4, rtol=1e-4)
    assert set(g_params) == set(reference["param_grads"])
    for name, ref in reference["param_grads"].items():
        np.testing.assert_allclose(
            np.asarray(g_params[name]), ref, atol=1e-4, rtol=1e-4, err_msg=name
        )


def mha_case(ctor, arrays, masks, call, config=TRAIN, self_attention=False, seed=0):
    torch.manual_seed(seed)
    torch_layer = torch.nn.MultiheadAttention(E, H, **ctor)
    if config is EVAL:
        torch_layer.eval()
    tree, _ = hax_module(lambda: MultiheadAttention(E, H, **ctor, rng=0), torch_layer)
    assert {torch_name(n) for n, _ in hax.named_leaves(tree) if "params/" in n} == set(
        dict(torch_layer.named_parameters())
    )

    def hax_fn(params, *args, **kwargs):
        return hax.apply_tree(with_params(tree, params), config, *args, **kwargs)[1]

    params = dict(torch_layer.named_parameters())
    shared = 3 if self_attention else 1
    return prepare(torch_layer, params, hax_fn, arrays, masks, call, shared), torch_layer


# ---------------------------------------------------------------- parity with torch

MHA_CASES = {
    # name: (constructor kwargs, input shapes, call kwargs, mask kinds, self-attention)
    "self_seq_first": ({}, [(L, N, E)], {}, "", True),
    "self_batch_first_bool_masks_per_head": (
        {"batch_first": True},
        [(N, L, E)],
        {"average_attn_weights": False},
        "attn2 kpm",
        True,
    ),
    "cross_kdim_vdim_float_attn3_no_weights": (
        {"kdim": 5, "vdim": 6, "batch_first": True},
        [(N, L, E), (N, S, 5), (N, S, 6)],
        {"need_weights": False},
        "attn3 float",
        False,
    ),
    "cross_bias_kv_zero_attn_float_attn3_float_kpm": (
        {"add_bias_kv": True, "add_zero_attn": True},
        [(L, N, E), (S, N, E), (S, N, E)],
        {},
        "attn3 float fkpm",
        False,
    ),
    "cross_bias_kv_bool_attn2_kpm_no_weights": (
        {"add_bias_kv": True, "batch_first": True},
        [(N, L, E), (N, S, E), (N, S, E)],
        {"need_weights": False},
        "attn2 kpm",
        False,
    ),
    "unbatched_bool_attn3_kpm_per_head": (
        {"add_zero_attn": True},
        [(L, E), (S, E), (S, E)],
        {"average_attn_weights": False},
        "attn3 kpm",
        False,
    ),
    "no_bias_float_attn2_bool_kpm": (  # mixed mask types: torch warns, both work
        {"bias": False, "kdim": 5, "vdim": 5},
        [(L, N, E), (S, N, 5), (S, N, 5)],
        {"average_attn_weights": False},
        "attn2 float kpm",
        False,
    ),
    "causal_float_no_weights": (
        {"batch_first": True},
        [(N, L, E)],
        {"need_weights": False, "is_causal": True},
        "causal",
        True,
    ),
    "causal_bool_with_weights": ({}, [(L, N, E)], {"is_causal": True}, "causal_bool", True),
    "causal_unbatched_with_kpm": (
        {},
        [(L, E)],
        {"need_weights": False, "is_causal": True},
        "causal kpm",
        True,
    ),
}

SDPA_CASES = {
    # name: (shapes of query, key, value; mask kind; kwargs)
    "bool_mask_scale": ([(2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5)], "bool", {"scale": 0.7}),
    "float_mask_3d": ([(3, 4, 8), (3, 6, 8), (3, 6, 8)], "float", {}),
    "causal_longer_target": ([(2, 3, 5, 8), (2, 3, 4, 8), (2, 3, 4, 8)], None, {"is_causal": True}),
    "gqa": ([(2, 4, 5, 8), (2, 2, 5, 8), (2, 2, 5, 8)], None, {"enable_gqa": True}),
    "fully_masked_query": ([(2, 3, 4), (2, 3, 4), (2, 3, 4)], "dead_row", {}),
}


def sdpa_case(shapes, mask, kwargs):
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=s).astype(np.float32) for s in shapes]
    masks = {}
    if mask is not None:
        keep = rng.random((shapes[0][-2], shapes[1][-2])) < 0.6
        keep[:, 0] = True
        if mask == "dead_row":
            keep[1] = False
        masks["attn_mask"] = (
            np.where(keep, 0, -np.inf).astype(np.float32) if mask == "float" else keep
        )

    def hax_fn(params, *args, **kwargs):
        return F.scaled_dot_product_attention(*args, **kwargs)

    torch_fn = torch.nn.functional.scaled_dot_product_attention
    return prepare(torch_fn, {}, hax_fn, arrays, masks, kwargs)


@pytest.fixture(scope="module")
def parity():
    cases, extra = {}, {}
    for i, (name, (ctor, shapes, call, kinds, self_attn)) in enumerate(MHA_CASES.items()):
        rng = np.random.default_rng(i)
        arrays = [rng.normal(size=s).astype(np.float32) for s in shapes]
        batch = None if len(shapes[0]) == 2 else N
        masks = random_masks(rng, kinds, batch, L, L if self_attn else S)
        cases[name], _ = mha_case(ctor, arrays, masks, call, self_attention=self_attn)
    # Every key of batch entry 1 hidden: NaN with need_weights (a plain softmax), 0 and
    # zero gradients without (scaled_dot_product_attention), as torch's two paths.
    kpm = np.zeros((N, L), bool)
    kpm[1] = True
    x = np.random.default_rng(0).normal(size=(N, L, E)).astype(np.float32)
    for need_weights in (True, False):
        cases[f"fully_masked_{need_weights}"], _ = mha_case(
            {"batch_first": True},
            [x],
            {"key_padding_mask": kpm},
            {"need_weights": need_weights},
            self_attention=True,
        )
    # Evaluation with dropout: torch's .eval() against train_mode=False.
    cases["eval_with_dropout"], torch_layer = mha_case(
        {"dropout": 0.5, "batch_first": True}, [x], {}, {}, config=EVAL, self_attention=True
    )
    with torch.no_grad():  # torch's fused fast path in evaluation
        extra["fast_path"] = [o.numpy() for o in torch_layer(*[torch.from_numpy(x)] * 3)]
    for name, case in SDPA_CASES.items():
        cases[f"sdpa_{name}"] = sdpa_case(*case)
    return cases, run_cases(cases), extra


@pytest.mark.parametrize("case", list(MHA_CASES))
def test_mha_matches_torch(case, parity):
    cases, results, _ = parity
    compare(results[case], cases[case][2])


def test_mha_fully_masked_queries_follow_torch(parity):
    cases, results, _ = parity
    for need_weights in (True, False):
        name = f"fully_masked_{need_weights}"
        compare(results[name], cases[name][2])
        (_, (g_x,)), (out, _) = results[name]
        assert np.isnan(np.asarray(out[1])).all() == need_weights
        assert not np.isnan(np.asarray(out[0])).any()
    np.testing.assert_array_equal(np.asarray(out[1]), 0.0)  # need_weights=False
    assert np.isfinite(np.asarray(g_x)).all()


def test_mha_eval_matches_torch_eval(parity):
    """Dropout is off in evaluation; torch's fused fast path gives the same numbers."""
    cases, results, extra = parity
    compare(results["eval_with_dropout"], cases["eval_with_dropout"][2])
    _, (out, w) = results["eval_with_dropout"]
    np.testing.assert_allclose(np.asarray(out), extra["fast_path"][0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(w), extra["fast_path"][1], atol=1e-6)


@pytest.mark.parametrize("case", list(SDPA_CASES))
def test_sdpa_matches_torch(case, parity):
    cases, results, _ = parity
    compare(results[f"sdpa_{case}"], cases[f"sdpa_{case}"][2])
    if case == "fully_masked_query":  # 0, like torch's, not NaN
        _, (out,) = results["sdpa_fully_masked_query"]
        np.testing.assert_array_equal(np.asarray(out[:, 1]), 0.0)


def test_generate_square_subsequent_mask_matches_torch():
    mask = hax.nn.generate_square_subsequent_mask(5)
    expected = torch.nn.Transformer.generate_square_subsequent_mask(5).numpy()
    assert mask.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(mask), expected)


# ---------------------------------------------------------------- dropout in training


def test_mha_train_dropout_scales_weights_and_advances_rng():
    torch.manual_seed(0)
    torch_layer = torch.nn.MultiheadAttention(E, H, batch_first=True)
    with torch.no_grad():
        torch_layer.out_proj.bias.copy_(torch.arange(E))

    def make(p):
        return hax_module(
            lambda: MultiheadAttention(E, H, dropout=p, batch_first=True, rng=0), torch_layer
        )[0]

    tree, tree1, tree0 = make(0.4), make(1.0), make(0.0)
    x = np.random.default_rng(1).normal(size=(16, 32, E)).astype(np.float32)
    call = {"average_attn_weights": False}
    kept_keys = []

    def run(key, x):
        t = {**tree, "buffers": {"rng": key}}
        new_tree, (out, w) = hax.apply_tree(t, TRAIN, x, x, x, **call)
        _, (out_eval, w_eval) = hax.apply_tree(t, EVAL, x, x, x, **call)
        _, (out_p1, w_p1) = hax.apply_tree(tree1, TRAIN, x, x, x, **call)
        new_tree0, (out_p0, _) = hax.apply_tree(tree0, TRAIN, x, x, x, **call)
        _, (out_p0_eval, _) = hax.apply_tree(tree0, EVAL, x, x, x, **call)
        kept_keys.append(new_tree0["buffers"]["rng"] is tree0["buffers"]["rng"])
        return (
            new_tree["buffers"]["rng"],
            out,
            w,
            out_eval,
            w_eval,
            out_p1,
            w_p1,
            out_p0,
            out_p0_eval,
        )

    run = jax.jit(run, compiler_options=FAST_COMPILE)
    key1, out, w, out_eval, w_eval, out_p1, w_p1, out_p0, out_p0_eval = run(
        tree["buffers"]["rng"], x
    )
    w, w_eval = np.asarray(w), np.asarray(w_eval)
    kept = w != 0
    assert abs(1 - kept.mean() - 0.4) < 0.01  # 16384 weights
    np.testing.assert_allclose(w[kept], w_eval[kept] / 0.6, rtol=1e-5)
    assert abs(w.sum(-1).mean() - 1) < 0.02  # mean-preserving: E[row sum] = 1
    assert not np.allclose(np.asarray(out), np.asarray(out_eval))
    # the key advances, and the next call draws another mask
    old = jax.random.key_data(tree["buffers"]["rng"])
    assert not np.array_equal(jax.random.key_data(key1), old)
    key2, _, w2, *_ = run(key1, x)
    assert not np.array_equal(jax.random.key_data(key2), jax.random.key_data(key1))
    assert not np.array_equal(np.asarray(w2) != 0, kept)
    # dropout=1: every weight dropped, the output is out_proj's bias
    np.testing.assert_array_equal(np.asarray(w_p1), 0.0)
    out_bias = np.asarray(tree1["submodules"]["out_proj"]["params"]["bias"])
    np.testing.assert_array_equal(np.asarray(out_p1), np.broadcast_to(out_bias, out_p1.shape))
    # dropout=0: training is evaluation, and no key is drawn
    np.testing.assert_array_equal(np.asarray(out_p0), np.asarray(out_p0_eval))
    assert kept_keys == [True]


# ---------------------------------------------------------------- structure and init


def test_mha_tree_layout():
    tree, config = abstract_module(lambda: MultiheadAttention(E, H, rng=0))
    assert config == {"train_mode": True}
    assert tree["apply"] is multihead_attention_apply
    assert list(tree["submodules"]) == ["out_proj"]
    assert tree["submodules"]["out_proj"]["apply"] is hax.nn.linear_apply
    assert list(tree["buffers"]) == ["rng"]
    assert jnp.issubdtype(tree["buffers"]["rng"].dtype, jax.dtypes.prng_key)
    assert tree["aux"] == {
        "embed_dim": E,
        "num_heads": H,
        "dropout": 0.0,
        "bias": True,
        "add_bias_kv": False,
        "add_zero_attn": False,
        "kdim": E,
        "vdim": E,
        "batch_first": False,
    }
    for kwargs in (
        {},
        {"kdim": 5, "vdim": 6, "add_bias_kv": True},
        {"bias": False, "add_zero_attn": True, "kdim": 4},
    ):
        torch_layer = torch.nn.MultiheadAttention(E, H, **kwargs)
        tree, _ = abstract_module(
            lambda kw=kwargs: MultiheadAttention(E, H, **kw, rng=0, dtype=jnp.bfloat16)
        )
        found = {
            torch_name(name): (leaf.shape, leaf.dtype)
            for name, leaf in hax.named_leaves(tree)
            if "params/" in name
        }
        expected = {k: (tuple(v.shape), jnp.bfloat16) for k, v in torch_layer.state_dict().items()}
        assert found == expected


def check_uniform(values, bound):
    values = np.asarray(values, np.float64).ravel()
    assert np.abs(values).max() <= bound
    assert np.abs(values).max() > 0.98 * bound  # fills the interval
    assert abs(values.std() / (bound / math.sqrt(3)) - 1) < 0.03
    assert abs(values.mean()) < 0.02 * bound


def test_mha_init_matches_torch():
    """xavier-uniform projections, zero biases, xavier-normal bias_k/bias_v, and
    Linear's default for out_proj.weight: the bounds torch's own init respects. (The
    layers are built in one jitted program: eager init compiles per param shape.)"""
    e = 256

    def build():
        with hax.rng_context(1):
            packed, other = (MultiheadAttention(e, 8, add_bias_kv=True) for _ in range(2))
        separate = MultiheadAttention(e, 8, kdim=e, vdim=e // 2, rng=2)
        return [hax.bind_module(*m)[0] for m in (packed, other, separate)]

    params, other, separate = jax.jit(build, compiler_options=FAST_COMPILE)()
    assert not np.allclose(params["params/in_proj_weight"], other["params/in_proj_weight"])
    torch_layer = torch.nn.MultiheadAttention(e, 8, add_bias_kv=True)
    bound = math.sqrt(6 / (e + 3 * e))  # fan_in e, fan_out 3e
    check_uniform(params["params/in_proj_weight"], bound)
    check_uniform(torch_layer.in_proj_weight.detach().numpy(), bound)
    check_uniform(params["out_proj/params/weight"], 1 / math.sqrt(e))
    check_uniform(torch_layer.out_proj.weight.detach().numpy(), 1 / math.sqrt(e))
    np.testing.assert_array_equal(np.asarray(params["params/in_proj_bias"]), 0.0)
    np.testing.assert_array_equal(np.asarray(params["out_proj/params/bias"]), 0.0)
    bias_kv = np.concatenate([np.ravel(params["params/bias_k"]), np.ravel(params["params/bias_v"])])
    assert abs(bias_kv.std() * math.sqrt(e) - 1) < 0.12  # N(0, 1/e): fans (e, e) for (1, 1, e)
    assert abs(torch.cat([torch_layer.bias_k, torch_layer.bias_v]).std().item() * 16 - 1) < 0.12
    assert not np.array_equal(params["params/bias_k"], params["params/bias_v"])
    # separate q/k/v weights, each with its own fans (q and k share their shape)
    check_uniform(separate["params/q_proj_weight"], math.sqrt(6 / (2 * e)))
    check_uniform(separate["params/k_proj_weight"], math.sqrt(6 / (2 * e)))
    check_uniform(separate["params/v_proj_weight"], math.sqrt(6 / (e + e // 2)))
    assert not np.allclose(separate["params/q_proj_weight"], separate["params/k_proj_weight"])
    with pytest.raises(ValueError, match="rng"):
        MultiheadAttention(e, 8)


def test_mha_under_debug():
    """The apply's jaxtyping annotations hold (checked while tracing)."""
    torch_layer = torch.nn.MultiheadAttention(E, H, kdim=5, vdim=6)
    tree, config = hax_module(lambda: MultiheadAttention(E, H, kdim=5, vdim=6, rng=0), torch_layer)
    q, k, v = jnp.zeros((L, N, E)), jnp.zeros((S, N, 5)), jnp.zeros((S, N, 6))
    with hax.debug():
        out, w = jax.eval_shape(lambda q, k, v: hax.apply_tree(tree, config, q, k, v)[1], q, k, v)
        assert out.shape == (L, N, E) and w.shape == (N, L, S)
        out, w = jax.eval_shape(
            lambda q, k, v: hax.apply_tree(tree, config, q, k, v, need_weights=False)[1],
            q[:, 0],
            k[:, 0],
            v[:, 0],
        )
        assert out.shape == (L, E) and w is None
        with pytest.raises(Exception, match=r"kdim|key"):  # a key of the wrong width
            jax.eval_shape(lambda q, v: hax.apply_tree(tree, config, q, v, v)[1], q, v)


# ---------------------------------------------------------------- validation and errors


def test_validate_reports_wrong_param_shapes():
    a, config = hax_module(
        lambda: MultiheadAttention(E, H, rng=0), torch.nn.MultiheadAttention(E, H)
    )
    b, _ = hax_module(
        lambda: MultiheadAttention(E, H, kdim=5, add_bias_kv=True, rng=0),
        torch.nn.MultiheadAttention(E, H, kdim=5, add_bias_kv=True),
    )
    model, config = hax.nn.Sequential((a, config), (b, config))
    bad = {
        **model,
        "submodules": {
            "0": {**a, "params": {**a["params"], "in_proj_weight": jnp.ones((3 * E + 1, E))}},
            "1": {
                **b,
                "params": {
                    **b["params"],
                    "k_proj_weight": jnp.ones((E, 6)),
                    "bias_k": jnp.ones((1, E)),
                },
            },
        },
    }
    with pytest.raises(hax.ValidationError) as err:
        hax.validate(bad)
    keys = {(p.path, p.key) for p in err.value.errors}
    assert keys == {
        ("0", "params.in_proj_weight"),
        ("1", "params.k_proj_weight"),
        ("1", "params.bias_k"),
    }
    assert "3*embed_dim" in str(err.value) and "kdim=5" in str(err.value)
    with pytest.raises(hax.ValidationError, match="train_mode"):
        hax.validate(a, {})


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: MultiheadAttention(8, 3, rng=0), ValueError, "divisible"),
        (lambda: MultiheadAttention(0, 1, rng=0), ValueError, "embed_dim"),
        (lambda: MultiheadAttention(8, 2, kdim=0, rng=0), ValueError, "kdim"),
        (lambda: MultiheadAttention(8, 2, dropout=1.5, rng=0), ValueError, "dropout"),
    ],
)
def test_constructor_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.debug_off
@pytest.mark.wrong_types
def test_apply_errors():
    tree, config = hax_module(
        lambda: MultiheadAttention(E, H, rng=0), torch.nn.MultiheadAttention(E, H)
    )
    x = jnp.ones((L, N, E))

    def call(*args, config=config, tree=tree, **kwargs):  # shapes are checked while tracing
        return jax.eval_shape(lambda *a: hax.apply_tree(tree, config, *a, **kwargs)[1], *args)

    with pytest.raises(ValueError, match="needs attn_mask"):
        call(x, x, x, is_causal=True)
    with pytest.raises(ValueError, match=r"2D attn_mask has shape \(4, 5\)"):
        call(x, x, x, attn_mask=jnp.zeros((L, S), bool))
    with pytest.raises(ValueError, match=r"N \* num_heads"):
        call(x, x, x, attn_mask=jnp.zeros((N, L, L), bool))
    with pytest.raises(ValueError, match="key_padding_mask"):
        call(x, x, x, key_padding_mask=jnp.zeros((N, S), bool))
    with pytest.raises(ValueError, match="key_padding_mask is 1D"):
        call(x, x, x, key_padding_mask=jnp.zeros((L,), bool))
    with pytest.raises(TypeError, match="bool or floating-point"):
        call(x, x, x, attn_mask=jnp.zeros((L, L), jnp.int32))
    with pytest.raises(ValueError, match="embed_dim=8"):
        call(jnp.ones((L, N, 6)), x, x)
    with pytest.raises(ValueError, match="batch size"):
        call(x, jnp.ones((S, N + 1, E)), jnp.ones((S, N + 1, E)))
    with pytest.raises(ValueError, match="2D"):
        call(jnp.ones((1, L, N, E)), x, x)
    with pytest.raises(KeyError, match="train_mode"):
        call(x, x, x, config={})
    bad = {**tree, "params": {"in_proj_bias": tree["params"]["in_proj_bias"]}}
    with pytest.raises(KeyError, match="in_proj_weight"):
        call(x, x, x, tree=bad)
    only_k = {**tree, "params": {**tree["params"], "bias_k": jnp.zeros((1, 1, E))}}
    with pytest.raises(KeyError, match="bias_v"):
        call(x, x, x, tree=only_k)


def test_sdpa_dropout_and_errors():
    q = jnp.ones((2, 64, 8))
    v = np.random.default_rng(0).normal(size=(2, 64, 8)).astype(np.float32)

    def both(q, v):
        out = F.scaled_dot_product_attention(q, q, v, dropout_p=0.5, dropout_rng=jax.random.key(1))
        return out, F.scaled_dot_product_attention(q, q, v)

    out, out_eval = jax.jit(both, compiler_options=FAST_COMPILE)(q, v)
    # uniform weights 1/64: dropped out and rescaled, the mean over keys is kept on average
    assert not np.allclose(np.asarray(out), np.asarray(out_eval))
    assert abs(float(jnp.mean(out - out_eval))) < 0.05

    def sdpa(*args, **kwargs):
        return jax.eval_shape(lambda *a: F.scaled_dot_product_attention(*a, **kwargs), *args)

    with pytest.raises(ValueError, match="dropout_rng"):
        sdpa(q, q, v, dropout_p=0.5)
    with pytest.raises(ValueError, match="not both"):
        sdpa(q, q, v, attn_mask=jnp.ones((64, 64), bool), is_causal=True)
    with pytest.raises(ValueError, match="enable_gqa"):
        sdpa(jnp.ones((3, 4, 8)), jnp.ones((2, 4, 8)), jnp.ones((2, 4, 8)), enable_gqa=True)
    with pytest.raises(ValueError, match="key"):
        sdpa(q, jnp.ones((2, 64, 4)), v)
