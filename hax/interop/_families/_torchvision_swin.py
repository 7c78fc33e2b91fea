"""torchvision's Swin Transformer (`swin_t`, ..., `swin_v2_b`): shifted-window
attention with a relative position bias (V2: cosine attention, a continuous bias from
`cpb_mlp`, post-norm blocks), patch merging. The stem and stages are `Sequential`s, the
MLP is `torchvision.ops.MLP` (a `Sequential`), stochastic depth is
`torchvision.ops.StochasticDepth`; attention and output dropout draw from the
attention node's key in train mode."""

import functools
from typing import Any

import jax

from ..._organizer import StateOrganizer, organized_apply
from ._randomness import dropout
from ._registry import register_all
from ._window_attention import (
    patch_merging_pad,
    relative_position_bias,
    shifted_window_attention,
)


@organized_apply
def swin_transformer_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`SwinTransformer`: features, norm, permute to channels-first, pool, `head`."""
    x = org.permute(org.norm(org.features(x)))
    return org.head(org.flatten(org.avgpool(x)))


@organized_apply
def swin_block_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`SwinTransformerBlock`: pre-norm attention and MLP, each drop-pathed and added."""
    x = x + org.stochastic_depth(org.attn(org.norm1(x)))
    return x + org.stochastic_depth(org.mlp(org.norm2(x)))


@organized_apply
def swin_block_v2_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`SwinTransformerBlockV2`: as V1 with the norms after attention and MLP."""
    x = x + org.stochastic_depth(org.norm1(org.attn(x)))
    return x + org.stochastic_depth(org.norm2(org.mlp(x)))


@organized_apply
def patch_merging_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`PatchMerging`: 2x2 patches into channels, norm, `reduction`."""
    return org.reduction(org.norm(patch_merging_pad(x)))


@organized_apply
def patch_merging_v2_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`PatchMergingV2`: 2x2 patches into channels, `reduction`, norm."""
    return org.norm(org.reduction(patch_merging_pad(x)))


def _attend(org: StateOrganizer, x: jax.Array, bias: jax.Array, v2: bool) -> jax.Array:
    """`shifted_window_attention` with the node's projections, sizes and dropouts (V2:
    its `logit_scale`, and no key bias)."""
    params = org.qkv.tree["params"]
    weight: jax.Array = params["weight"]
    qkv_bias: jax.Array | None = params.get("bias")
    if v2 and qkv_bias is not None:
        length = qkv_bias.shape[0] // 3
        qkv_bias = qkv_bias.at[length : 2 * length].set(0)

    def qkv(windows: jax.Array) -> jax.Array:
        out = windows @ weight.T
        return out if qkv_bias is None else out + qkv_bias

    drop = functools.partial(dropout, org, who="ShiftedWindowAttention")
    return shifted_window_attention(
        x,
        qkv,
        org.proj,
        bias,
        org.window_size,
        org.num_heads,
        org.shift_size,
        logit_scale=org.logit_scale if v2 else None,
        attention_dropout=lambda a: drop(a, org.attention_dropout),
        dropout=lambda a: drop(a, org.dropout),
    )


@organized_apply
def shifted_window_attention_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`ShiftedWindowAttention` on `(B, H, W, C)`: the learned bias table."""
    bias = relative_position_bias(
        org.relative_position_bias_table, org.relative_position_index, org.window_size
    )
    return _attend(org, x, bias, v2=False)


@organized_apply
def shifted_window_attention_v2_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`ShiftedWindowAttentionV2`: the bias `16 sigmoid(cpb_mlp(coords))`, cosine
    attention."""
    table = org.cpb_mlp(org.relative_coords_table).reshape(-1, org.num_heads)
    bias = relative_position_bias(table, org.relative_position_index, org.window_size)
    return _attend(org, x, 16 * jax.nn.sigmoid(bias), v2=True)


register_all(
    "torchvision.models.swin_transformer.",
    {
        "SwinTransformer": swin_transformer_apply,
        "SwinTransformerBlock": swin_block_apply,
        "SwinTransformerBlockV2": swin_block_v2_apply,
        "PatchMerging": patch_merging_apply,
        "PatchMergingV2": patch_merging_v2_apply,
        "ShiftedWindowAttention": shifted_window_attention_apply,
        "ShiftedWindowAttentionV2": shifted_window_attention_v2_apply,
    },
    rng={"ShiftedWindowAttention", "ShiftedWindowAttentionV2"},
)
