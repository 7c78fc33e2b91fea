"""timm's `VisionTransformer` (`vit_*`, `deit_*`, `deit3_*`, register-token and
average-pooled variants) and `VisionTransformerDistilled` (`deit_*_distilled_*`), with
the layers they are made of: `PatchEmbed`, `Block`, `Attention` and `LayerScale`
(`Mlp`, `DropPath` and timm's norms are in `_timm_layers` and `_timm_blocks`)."""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import AuxValue, InputArray
from ._attention import attention
from ._elementwise import scaled_by
from ._randomness import training
from ._registry import register_all


@organized_apply
def patch_embed_apply(org: StateOrganizer, x: InputArray) -> jax.Array:
    """`PatchEmbed`: the patch convolution, as `(B, patches, C)` with `flatten` or in
    `output_fmt` (`NHWC` for `dynamic_img_size`), then the optional norm."""
    x = jnp.asarray(x)
    _, _, h, w = x.shape
    ph, pw = org.patch_size
    if org.img_size is not None:
        if org.strict_img_size and (h, w) != tuple(org.img_size):
            raise ValueError(f"Input size ({h}x{w}) doesn't match model {tuple(org.img_size)}.")
        if not org.strict_img_size and not org.dynamic_img_pad and (h % ph or w % pw):
            raise ValueError(f"Input size ({h}x{w}) should be divisible by patch size ({ph}x{pw}).")
    if org.dynamic_img_pad:
        x = jnp.pad(x, ((0, 0), (0, 0), (0, (ph - h % ph) % ph), (0, (pw - w % pw) % pw)))
    tokens: jax.Array = org.proj(x)
    if org.flatten:
        tokens = tokens.reshape(*tokens.shape[:2], -1).swapaxes(1, 2)  # NCHW -> NLC
    elif org.output_fmt != "NCHW":
        tokens = _nchw_to(tokens, org.output_fmt)
    out: jax.Array = org.norm(tokens)
    return out


def _nchw_to(x: jax.Array, fmt: str) -> jax.Array:
    """timm's `nchw_to`: `NCHW` as `NHWC`, `NLC` or `NCL`."""
    if fmt == "NHWC":
        return x.transpose(0, 2, 3, 1)
    x = x.reshape(*x.shape[:2], -1)
    return x.swapaxes(1, 2) if fmt == "NLC" else x


def _output_fmt(module: Any) -> Mapping[str, AuxValue]:
    """`PatchEmbed.output_fmt`, a `Format` enum, as its string."""
    return {"output_fmt": str(module.output_fmt.value)}


def _self_attention_bias(
    n: int, attn_mask: jax.Array | None, is_causal: bool, dtype: Any
) -> jax.Array | None:
    """timm's `resolve_self_attn_mask`: the causal mask, or `attn_mask` (bool: True
    takes part) as an additive mask."""
    if is_causal:
        return jnp.where(jnp.tril(jnp.ones((n, n), bool)), 0.0, -jnp.inf).astype(dtype)
    if attn_mask is None:
        return None
    if attn_mask.dtype == jnp.bool_:
        return jnp.where(attn_mask, 0.0, -jnp.inf).astype(dtype)
    return attn_mask.astype(dtype)


@organized_apply
def attention_apply(
    org: StateOrganizer, x: InputArray, attn_mask: InputArray | None = None, is_causal: bool = False
) -> jax.Array:
    """`Attention`: multi-head self-attention from one `qkv` projection (eager form)."""
    attn_mask = None if attn_mask is None else jnp.asarray(attn_mask)
    b, n, _ = x.shape
    gate = getattr(org, "gate", None)
    gate = jax.nn.sigmoid(gate(x)) if gate is not None else None
    qkv = org.qkv(x).reshape(b, n, 3, org.num_heads, org.head_dim).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    q, k = org.q_norm(q), org.k_norm(k)
    bias = _self_attention_bias(n, attn_mask, is_causal, q.dtype)
    x, _ = attention(q, k, v, org.scale, bias, dropout=org.attn_drop)
    x = org.norm(x)
    if gate is not None:
        x = x * gate
    out: jax.Array = org.proj_drop(org.proj(x))
    return out


@organized_apply
def block_apply(
    org: StateOrganizer, x: InputArray, attn_mask: InputArray | None = None, is_causal: bool = False
) -> jax.Array:
    """`Block`: pre-norm attention and MLP, each layer-scaled, drop-pathed and residual."""
    h: jax.Array = jnp.asarray(x)
    h = h + org.drop_path1(
        org.ls1(org.attn(org.norm1(h), attn_mask=attn_mask, is_causal=is_causal))
    )
    h = h + org.drop_path2(org.ls2(org.mlp(org.norm2(h))))
    return h


def _pos_embed(org: StateOrganizer, x: jax.Array, prefix: list[jax.Array]) -> jax.Array:
    """`_pos_embed`: the prefix tokens (class, distillation or register tokens) and the
    position embeddings, added before (`no_embed_class`) or after joining them."""
    tokens = [jnp.broadcast_to(t, (x.shape[0], *t.shape[1:])) for t in prefix]
    if org.pos_embed is None:
        return jnp.concatenate([*tokens, x.reshape(x.shape[0], -1, x.shape[-1])], axis=1)
    if org.dynamic_img_size:
        _, h, w, c = x.shape
        grid = tuple(org.patch_embed.tree["aux"]["grid_size"])
        if (h, w) != grid:
            raise ValueError(
                f"dynamic_img_size: a {h}x{w} patch grid needs the position embeddings "
                f"resampled from {grid[0]}x{grid[1]} (bicubic), which is not supported"
            )
        x = x.reshape(x.shape[0], -1, c)
    if org.no_embed_class:
        x = jnp.concatenate([*tokens, x + org.pos_embed], axis=1)
    else:
        x = jnp.concatenate([*tokens, x], axis=1) + org.pos_embed
    out: jax.Array = org.pos_drop(x)
    return out


def _features(
    org: StateOrganizer, x: jax.Array, prefix: list[jax.Array], attn_mask: Any, is_causal: bool
) -> jax.Array:
    """`forward_features`: embeddings, blocks, final norm."""
    x = org.patch_drop(_pos_embed(org, org.patch_embed(x), prefix))
    x = org.norm_pre(x)
    if attn_mask is not None or is_causal:
        for blk in org.blocks:
            x = blk(x, attn_mask=attn_mask, is_causal=is_causal)
    else:
        x = org.blocks(x)
    out: jax.Array = org.norm(x)
    return out


def _pool(org: StateOrganizer, x: jax.Array) -> jax.Array:
    """`pool`: the attention pool, or `global_pool` (`token`, `avg`, `max`, `avgmax`, none)."""
    if org.attn_pool is not None:
        if not org.pool_include_prefix:
            x = x[:, org.num_prefix_tokens :]
        out: jax.Array = org.attn_pool(x)
        return out
    pool_type = org.global_pool
    if not pool_type:
        return x
    if pool_type == "token":
        return x[:, 0]
    x = x if org.pool_include_prefix else x[:, org.num_prefix_tokens :]
    if pool_type == "avg":
        return x.mean(axis=1)
    if pool_type == "avgmax":
        return 0.5 * (x.max(axis=1) + x.mean(axis=1))
    if pool_type == "max":
        return x.max(axis=1)
    raise ValueError(f"Unknown pool type {pool_type}")


@organized_apply
def vision_transformer_apply(
    org: StateOrganizer, x: InputArray, attn_mask: InputArray | None = None, is_causal: bool = False
) -> jax.Array:
    """`VisionTransformer`: features, pooling, `fc_norm`, head dropout and head."""
    x = jnp.asarray(x)
    attn_mask = None if attn_mask is None else jnp.asarray(attn_mask)
    prefix = [t for t in (org.cls_token, org.reg_token) if t is not None]
    x = _features(org, x, prefix, attn_mask, is_causal)
    out: jax.Array = org.head(org.head_drop(org.fc_norm(_pool(org, x))))
    return out


@organized_apply
def vision_transformer_distilled_apply(
    org: StateOrganizer, x: InputArray, attn_mask: InputArray | None = None, is_causal: bool = False
) -> Any:
    """`VisionTransformerDistilled`: the class and distillation tokens through `head` and
    `head_dist`, averaged (a pair in train mode with `distilled_training`)."""
    x = jnp.asarray(x)
    attn_mask = None if attn_mask is None else jnp.asarray(attn_mask)
    x = _features(org, x, [org.cls_token, org.dist_token], attn_mask, is_causal)
    x, x_dist = org.head_drop(x[:, 0]), org.head_drop(x[:, 1])
    x, x_dist = org.head(x), org.head_dist(x_dist)
    if org.distilled_training and training(org, "VisionTransformerDistilled"):
        return x, x_dist
    return (x + x_dist) / 2


register_all(
    "timm.",
    {
        "layers.patch_embed.PatchEmbed": patch_embed_apply,
        "layers.attention.Attention": attention_apply,
        "layers.layer_scale.LayerScale": scaled_by("gamma"),
        "models.vision_transformer.Block": block_apply,
        "models.vision_transformer.VisionTransformer": vision_transformer_apply,
        "models.deit.VisionTransformerDistilled": vision_transformer_distilled_apply,
    },
    aux={"layers.patch_embed.PatchEmbed": _output_fmt},
)
