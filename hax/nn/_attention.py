"""`MultiheadAttention`: PyTorch's parameter names, layouts, masks and initialisation.

The params are `torch.nn.MultiheadAttention`'s: a packed `in_proj_weight` of shape
`(3 * embed_dim, embed_dim)` (or separate `q_proj_weight`, `k_proj_weight`,
`v_proj_weight` when `kdim`/`vdim` differ from `embed_dim`), `in_proj_bias`, the
optional `bias_k`/`bias_v`, and a submodule `out_proj` (a `Linear`), so a PyTorch
`state_dict` (`in_proj_weight`, `out_proj.weight`, ...) maps on by name.
"""

import math
from typing import Any, NotRequired

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Key
from typing_extensions import TypedDict

from .._module import apply_tree
from .._rng import RngLike, resolve_rng
from .._torch_attrs import dtype_of, has
from .._types import GlobalConfig, InputArray, Module, StructureTree
from .._validate import validate
from . import _init
from ._dropout import read_train_mode
from ._functional import attention_and_weights, float_mask, linear
from ._layer import ConvertChild, layer
from ._linear import Linear

_WHO = "MultiheadAttention"

_CAUSAL_NEEDS_MASK = (
    "MultiheadAttention: is_causal=True is a hint that attn_mask is the causal mask, so it "
    "needs attn_mask (as in PyTorch); pass attn_mask=hax.nn.generate_square_subsequent_mask(L)"
)

Mask = Bool[Array, "..."] | Float[Array, "..."] | None


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """PyTorch's `_calculate_fan_in_and_fan_out`: `(fan_in, fan_out)`."""
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _xavier_uniform(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """`torch.nn.init.xavier_uniform_`: `U(-a, a)` with `a = sqrt(6 / (fan_in + fan_out))`."""
    fan_in, fan_out = _fans(shape)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return _init.uniform(key, shape, dtype, -bound, bound)


def _xavier_normal(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """`torch.nn.init.xavier_normal_`: `N(0, 2 / (fan_in + fan_out))`."""
    fan_in, fan_out = _fans(shape)
    return _init.normal(key, shape, dtype) * math.sqrt(2.0 / (fan_in + fan_out))


def _shape_error(found: str, expected: str) -> ValueError:
    return ValueError(f"{_WHO}: {found}, expected {expected}")


def _check_inputs(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    key_padding_mask: jax.Array | None,
    attn_mask: jax.Array | None,
    aux: dict[str, Any],
) -> bool:
    """PyTorch's `_mha_shape_check` plus the feature sizes; whether the input is batched."""
    if query.ndim not in (2, 3):
        raise _shape_error(
            f"query has shape {tuple(query.shape)}", "a 2D (L, E) or 3D (batched) query"
        )
    batched = query.ndim == 3
    if key.ndim != query.ndim or value.ndim != query.ndim:
        raise _shape_error(
            f"query is {query.ndim}D but key and value are {key.ndim}D and {value.ndim}D",
            "key and value with the query's number of dims",
        )
    kpm_ndim = 2 if batched else 1
    if key_padding_mask is not None and key_padding_mask.ndim != kpm_ndim:
        raise _shape_error(
            f"key_padding_mask is {key_padding_mask.ndim}D",
            f"a {kpm_ndim}D mask ({'(N, S)' if batched else '(S,)'}) for a {query.ndim}D query",
        )
    if attn_mask is not None and attn_mask.ndim not in (2, 3):
        raise _shape_error(
            f"attn_mask is {attn_mask.ndim}D", "a 2D (L, S) or 3D (N * num_heads, L, S) mask"
        )
    for name, x, dim in (
        ("query", query, "embed_dim"),
        ("key", key, "kdim"),
        ("value", value, "vdim"),
    ):
        if x.shape[-1] != aux[dim]:
            raise _shape_error(
                f"{name} has shape {tuple(x.shape)}",
                f"last dim {dim}={aux[dim]} (the layer was built with it)",
            )
    if key.shape[:-1] != value.shape[:-1]:
        raise _shape_error(
            f"key has shape {tuple(key.shape)} and value {tuple(value.shape)}",
            "the same sequence and batch dims",
        )
    if batched:
        batch_axis = 0 if aux["batch_first"] else 1
        if key.shape[batch_axis] != query.shape[batch_axis]:
            raise _shape_error(
                f"query has shape {tuple(query.shape)} and key {tuple(key.shape)}",
                f"the same batch size on axis {batch_axis} (batch_first={aux['batch_first']})",
            )
    return batched


def _combined_mask(
    attn_mask: jax.Array | None,
    key_padding_mask: jax.Array | None,
    batch: int,
    num_heads: int,
    target_len: int,
    source_len: int,
    dtype: Any,
) -> jax.Array | None:
    """`attn_mask` and `key_padding_mask` as one additive mask broadcastable to
    `(N, num_heads, L, S)` (`True` in a bool mask: not allowed, i.e. `-inf`)."""
    mask = None
    if attn_mask is not None:
        m = float_mask(attn_mask, dtype, "attn_mask", True)
        if m.ndim == 2:
            if m.shape != (target_len, source_len):
                raise _shape_error(
                    f"the 2D attn_mask has shape {tuple(m.shape)}",
                    f"(L, S) = {(target_len, source_len)}",
                )
            mask = m[None, None]
        else:
            expected = (batch * num_heads, target_len, source_len)
            if m.shape != expected:
                raise _shape_error(
                    f"the 3D attn_mask has shape {tuple(m.shape)}",
                    f"(N * num_heads, L, S) = {expected}",
                )
            mask = m.reshape(batch, num_heads, target_len, source_len)
    if key_padding_mask is not None:
        kpm = float_mask(key_padding_mask, dtype, "key_padding_mask", True)
        if kpm.shape != (batch, source_len):
            raise _shape_error(
                f"key_padding_mask has shape {tuple(kpm.shape)} (with a batch axis)",
                f"(N, S) = {(batch, source_len)}",
            )
        kpm = kpm[:, None, None, :]
        mask = kpm if mask is None else mask + kpm
    return mask


def _in_projection(
    params: dict[str, Any],
    aux: dict[str, Any],
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`query @ W_q^T + b_q` and the same for key and value, from the packed or the
    separate weights."""
    e = aux["embed_dim"]
    packed = aux["kdim"] == e and aux["vdim"] == e
    names = ("in_proj_weight",) if packed else ("q_proj_weight", "k_proj_weight", "v_proj_weight")
    missing = [n for n in names if n not in params]
    if missing:
        raise KeyError(
            f"{_WHO}: params.{missing[0]} is missing; a MultiheadAttention with "
            f"kdim == vdim == embed_dim has params.in_proj_weight (3*embed_dim, embed_dim), "
            f"otherwise q_proj_weight, k_proj_weight and v_proj_weight (kdim={aux['kdim']}, "
            f"vdim={aux['vdim']}, embed_dim={e} here)"
        )
    if packed:
        w = params["in_proj_weight"]
        wq, wk, wv = w[:e], w[e : 2 * e], w[2 * e :]
    else:
        wq, wk, wv = params["q_proj_weight"], params["k_proj_weight"], params["v_proj_weight"]
    b = params.get("in_proj_bias")
    bq, bk, bv = (None, None, None) if b is None else (b[:e], b[e : 2 * e], b[2 * e :])
    return linear(query, wq, bq), linear(key, wk, bk), linear(value, wv, bv)


def multihead_attention_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    query: Float[InputArray, "... embed_dim"],
    key: Float[InputArray, "... kdim"],
    value: Float[InputArray, "... vdim"],
    key_padding_mask: Mask = None,
    need_weights: bool = True,
    attn_mask: Mask = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
) -> tuple[StructureTree, tuple[Float[Array, "... embed_dim"], Float[Array, "..."] | None]]:
    """Attend from `query` to `key`/`value`: `(new_tree, (attn_output, attn_weights))`.

    Shapes (`L` target length, `S` source length, `N` batch): `query (L, N, E)`,
    `key (S, N, kdim)`, `value (S, N, vdim)` with `batch_first=False`; `(N, L, E)`, ...
    with `batch_first=True`; `(L, E)`, `(S, kdim)`, `(S, vdim)` unbatched.

    **Arguments:** as `torch.nn.MultiheadAttention.forward`.
    - `key_padding_mask`: `(N, S)` (`(S,)` unbatched); bool `True` ignores that key,
      a float mask is added to the logits.
    - `need_weights`: also return the attention weights (after dropout), else `None`.
    - `attn_mask`: `(L, S)` for every batch entry and head, or `(N * num_heads, L, S)`
      (`(num_heads, L, S)` unbatched); bool `True` forbids the position, a float mask
      is added to the logits.
    - `average_attn_weights`: weights averaged over heads, `(N, L, S)`, or per head,
      `(N, num_heads, L, S)` (without `N` unbatched).
    - `is_causal`: a hint that `attn_mask` is the causal mask. PyTorch requires
      `attn_mask` with it, and so does HAX; HAX then always applies `attn_mask` (PyTorch
      may use its own causal mask instead), which is the same whenever the hint is true.

    In training (`train_mode` true and `dropout > 0`) the attention weights are dropped
    out with the key in `buffers["rng"]`, which advances; otherwise nothing changes.

    A query whose keys are all masked gets NaN with `need_weights=True` (a plain
    softmax) and 0 with `need_weights=False`, as PyTorch's two code paths do.
    """
    train = read_train_mode(global_config, _WHO)
    aux: dict[str, Any] = tree["aux"]
    params = tree["params"]
    num_heads = aux["num_heads"]
    query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    batched = _check_inputs(query, key, value, key_padding_mask, attn_mask, aux)
    if is_causal and attn_mask is None:
        raise ValueError(_CAUSAL_NEEDS_MASK)
    if not batched:
        query, key, value = query[None], key[None], value[None]
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask[None]
    elif not aux["batch_first"]:
        query, key, value = (jnp.swapaxes(x, 0, 1) for x in (query, key, value))
    # (N, L, E) from here on
    batch, target_len, embed_dim = query.shape
    source_len = key.shape[1]
    head_dim = embed_dim // num_heads
    mask = _combined_mask(
        attn_mask, key_padding_mask, batch, num_heads, target_len, source_len, query.dtype
    )
    q, k, v = _in_projection(params, aux, query, key, value)
    if ("bias_k" in params) != ("bias_v" in params):
        raise KeyError(
            f"{_WHO}: params has only one of bias_k and bias_v; add_bias_kv needs both, "
            "each of shape (1, 1, embed_dim)"
        )
    if "bias_k" in params:
        k = jnp.concatenate([k, jnp.broadcast_to(params["bias_k"][0], (batch, 1, embed_dim))], 1)
        v = jnp.concatenate([v, jnp.broadcast_to(params["bias_v"][0], (batch, 1, embed_dim))], 1)

    def heads(x: jax.Array) -> jax.Array:  # (N, T, E) -> (N, H, T, D)
        return x.reshape(batch, x.shape[1], num_heads, head_dim).transpose(0, 2, 1, 3)

    q, k, v = heads(q), heads(k), heads(v)
    if aux["add_zero_attn"]:
        zeros = jnp.zeros((batch, num_heads, 1, head_dim), k.dtype)
        k, v = jnp.concatenate([k, zeros], 2), jnp.concatenate([v, zeros.astype(v.dtype)], 2)
    if mask is not None and k.shape[2] > source_len:  # the added keys are never masked
        mask = jnp.pad(mask, [(0, 0)] * 3 + [(0, k.shape[2] - source_len)])

    p = aux["dropout"]
    new_tree, dropout_rng = tree, None
    if train and p > 0.0:
        next_key, dropout_rng = jax.random.split(tree["buffers"]["rng"])
        new_tree = {**tree, "buffers": {**tree["buffers"], "rng": next_key}}
    out, weights = attention_and_weights(
        q,
        k,
        v,
        mask,
        math.sqrt(1.0 / head_dim),
        p if dropout_rng is not None else 0.0,
        dropout_rng,
        zero_masked_rows=not need_weights,
    )
    out = out.transpose(0, 2, 1, 3).reshape(batch, target_len, embed_dim)
    children = dict(tree["submodules"])
    children["out_proj"], out = apply_tree(children["out_proj"], global_config, out)
    new_tree = {**new_tree, "submodules": children}
    if not batched:
        out = out[0]
    elif not aux["batch_first"]:
        out = jnp.swapaxes(out, 0, 1)
    if not need_weights:
        return new_tree, (out, None)
    if average_attn_weights:
        weights = jnp.mean(weights, axis=1)
    return new_tree, (out, weights if batched else weights[0])


def MultiheadAttention(
    embed_dim: int,
    num_heads: int,
    dropout: float = 0.0,
    bias: bool = True,
    add_bias_kv: bool = False,
    add_zero_attn: bool = False,
    kdim: int | None = None,
    vdim: int | None = None,
    batch_first: bool = False,
    *,
    rng: RngLike | None = None,
    dtype: Any = jnp.float32,
) -> Module:
    """Multi-head attention, as `torch.nn.MultiheadAttention`; run with
    `multihead_attention_apply` (see there for the inputs, masks and outputs).

    `MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O` with
    `head_i = softmax(Q W_i^Q (K W_i^K)^T / sqrt(head_dim)) V W_i^V`.

    Params, with PyTorch's names and initialisation:
    - `in_proj_weight (3 * embed_dim, embed_dim)` (xavier-uniform) when
      `kdim == vdim == embed_dim`; otherwise `q_proj_weight (embed_dim, embed_dim)`,
      `k_proj_weight (embed_dim, kdim)`, `v_proj_weight (embed_dim, vdim)`, each
      xavier-uniform;
    - `in_proj_bias (3 * embed_dim,)`, zeros, when `bias`;
    - `bias_k`, `bias_v` of shape `(1, 1, embed_dim)`, xavier-normal, when `add_bias_kv`;
    - submodule `out_proj`: a `Linear(embed_dim, embed_dim, bias)` with `Linear`'s
      initialisation and a zero bias.

    Buffer `rng`: the key of the attention dropout. The returned config is
    `{"train_mode": True}`, PyTorch's default.

    **Arguments:**
    - `embed_dim`: the model size `E`; split over `num_heads` heads (`E % num_heads == 0`).
    - `dropout`: dropout probability on the attention weights in training.
    - `bias`: biases on the input and output projections.
    - `add_bias_kv`: append the learned `bias_k`/`bias_v` to the keys and values.
    - `add_zero_attn`: append a zero key and value (after the projections).
    - `kdim`, `vdim`: the key and value feature sizes (default `embed_dim`).
    - `batch_first`: inputs and outputs are `(N, L, E)` instead of `(L, N, E)`.
    - `rng`: a PRNG key (or int seed); defaults to the next key of `hax.rng_context`.
    - `dtype`: the params' dtype.
    """
    kdim = embed_dim if kdim is None else kdim
    vdim = embed_dim if vdim is None else vdim
    for name, size in (
        ("embed_dim", embed_dim),
        ("num_heads", num_heads),
        ("kdim", kdim),
        ("vdim", vdim),
    ):
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"{_WHO}: {name} must be a positive int, found {size!r}")
    if embed_dim % num_heads:
        raise ValueError(
            f"{_WHO}: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})"
        )
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"{_WHO}: dropout must be in [0, 1], found {dropout}")
    proj_key, out_key, bk_key, bv_key, dropout_key = jax.random.split(resolve_rng(rng, _WHO), 5)
    params: dict[str, jax.Array] = {}
    if kdim == embed_dim and vdim == embed_dim:
        params["in_proj_weight"] = _xavier_uniform(proj_key, (3 * embed_dim, embed_dim), dtype)
    else:
        q_key, k_key, v_key = jax.random.split(proj_key, 3)
        params["q_proj_weight"] = _xavier_uniform(q_key, (embed_dim, embed_dim), dtype)
        params["k_proj_weight"] = _xavier_uniform(k_key, (embed_dim, kdim), dtype)
        params["v_proj_weight"] = _xavier_uniform(v_key, (embed_dim, vdim), dtype)
    out_proj, _ = Linear(embed_dim, embed_dim, bias=bias, rng=out_key, dtype=dtype)
    if bias:  # PyTorch zeroes both biases; out_proj.weight keeps Linear's init
        params["in_proj_bias"] = _init.full((3 * embed_dim,), 0.0, dtype)
        out_bias = _init.full((embed_dim,), 0.0, dtype)
        out_proj = {**out_proj, "params": {**out_proj["params"], "bias": out_bias}}
    if add_bias_kv:
        params["bias_k"] = _xavier_normal(bk_key, (1, 1, embed_dim), dtype)
        params["bias_v"] = _xavier_normal(bv_key, (1, 1, embed_dim), dtype)
    tree = _MULTIHEAD_ATTENTION.node(
        params,
        {"rng": dropout_key},
        {"out_proj": out_proj},
        embed_dim=embed_dim,
        num_heads=num_heads,
        dropout=float(dropout),
        bias=bias,
        add_bias_kv=add_bias_kv,
        add_zero_attn=add_zero_attn,
        kdim=kdim,
        vdim=vdim,
        batch_first=batch_first,
    )
    config = {"train_mode": True}
    return validate(tree, config), config


class MultiheadAttentionParams(TypedDict):
    """Either `in_proj_weight` or the three `*_proj_weight`s (the constructor chooses by
    `kdim`/`vdim`; a spec cannot say "one of"), so all are optional here."""

    in_proj_weight: NotRequired[Float[Array, "3*embed_dim embed_dim"]]
    q_proj_weight: NotRequired[Float[Array, "embed_dim embed_dim"]]
    k_proj_weight: NotRequired[Float[Array, "embed_dim kdim"]]
    v_proj_weight: NotRequired[Float[Array, "embed_dim vdim"]]
    in_proj_bias: NotRequired[Float[Array, " 3*embed_dim"]]
    bias_k: NotRequired[Float[Array, "1 1 embed_dim"]]
    bias_v: NotRequired[Float[Array, "1 1 embed_dim"]]


class MultiheadAttentionBuffers(TypedDict):
    rng: Key[Array, ""]


def _convert(m: Any, convert_child: ConvertChild) -> Module:
    return MultiheadAttention(
        m.embed_dim,
        m.num_heads,
        m.dropout,
        bias=has(m.in_proj_bias),
        add_bias_kv=has(m.bias_k),
        add_zero_attn=m.add_zero_attn,
        kdim=m.kdim,
        vdim=m.vdim,
        batch_first=m.batch_first,
        dtype=dtype_of(m),
    )


_MULTIHEAD_ATTENTION = layer(
    _WHO,
    multihead_attention_apply,
    params=MultiheadAttentionParams,
    buffers=MultiheadAttentionBuffers,
    aux={
        "embed_dim": int,
        "num_heads": int,
        "dropout": float,
        "bias": bool,
        "add_bias_kv": bool,
        "add_zero_attn": bool,
        "kdim": int,
        "vdim": int,
        "batch_first": bool,
    },
    config={"train_mode": bool},
    torch="torch.nn.MultiheadAttention",
    converter=_convert,
    present_if={"in_proj_bias": "bias", "bias_k": "add_bias_kv", "bias_v": "add_bias_kv"},
)
