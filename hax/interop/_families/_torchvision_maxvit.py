"""torchvision's MaxViT (`maxvit_t`): MBConv, then window and grid attention with a
relative position bias, in each layer. The stem, the MBConv layers and the classifier
are `Sequential`s of `hax.nn` layers and torchvision's `Conv2dNormActivation`,
`SqueezeExcitation` and `StochasticDepth`."""

from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import GlobalConfig, StructureTree
from ._registry import register_all
from ._window_attention import relative_position_bias


@organized_apply
def maxvit_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`MaxVit`: stem, blocks, classifier."""
    x = org.stem(x)
    for block in org.blocks:
        x = block(x)
    return org.classifier(x)


@organized_apply
def maxvit_block_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`MaxVitBlock`: its layers in order."""
    for layer in org.layers:
        x = layer(x)
    return x


@organized_apply
def maxvit_layer_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`MaxVitLayer`: MBConv, window attention, grid attention (a named `Sequential`)."""
    return org.layers(x)


@organized_apply
def mbconv_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """MaxViT's `MBConv`: the (pooled, projected) input plus the drop-pathed layers."""
    return org.proj(x) + org.stochastic_depth(org.layers(x))


@organized_apply
def relative_attention_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`RelativePositionalMultiHeadAttention` on `(B, G, P, D)`: attention within each
    of the `G` partitions, keys scaled by `feat_dim ** -0.5`, plus the relative bias."""
    b, g, p, d = x.shape
    heads, head_dim = org.n_heads, org.head_dim

    def split(t: jax.Array) -> jax.Array:
        return t.reshape(b, g, p, heads, head_dim).transpose(0, 1, 3, 2, 4)

    q, k, v = (split(t) for t in jnp.split(org.to_qkv(x), 3, axis=-1))
    k = k * org.scale_factor
    size = int(org.max_seq_len**0.5)
    bias = relative_position_bias(
        org.relative_position_bias_table, org.relative_position_index, (size, size)
    )
    weights = jax.nn.softmax(jnp.einsum("bghid,bghjd->bghij", q, k) + bias, axis=-1)
    out = jnp.einsum("bghij,bghjd->bghid", weights, v)
    return org.merge(out.transpose(0, 1, 3, 2, 4).reshape(b, g, p, d))


@organized_apply
def partition_attention_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`PartitionAttentionLayer`: partition into windows (or a grid, by swapping axes),
    pre-norm attention and MLP with drop-path, departition."""
    p = org.p
    gh, gw = org.grid_size[0] // p, org.grid_size[1] // p
    if org.grid_size[0] % p or org.grid_size[1] % p:
        raise ValueError(
            f"Grid size must be divisible by partition size. Got grid size of "
            f"{org.grid_size} and partition size of {p}"
        )
    x = org.partition_swap(org.partition_op(x, p))
    x = x + org.stochastic_dropout(org.attn_layer(x))
    x = x + org.stochastic_dropout(org.mlp_layer(x))
    return org.departition_op(org.departition_swap(x), p, gh, gw)


def window_partition_apply(
    tree: StructureTree, global_config: GlobalConfig, x: jax.Array, p: int
) -> tuple[StructureTree, jax.Array]:
    """`WindowPartition`: `(B, C, H, W)` -> `(B, H/p * W/p, p * p, C)`."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p).transpose(0, 2, 4, 3, 5, 1)
    return tree, x.reshape(b, (h // p) * (w // p), p * p, c)


def window_departition_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    x: jax.Array,
    p: int,
    h_partitions: int,
    w_partitions: int,
) -> tuple[StructureTree, jax.Array]:
    """`WindowDepartition`: the inverse of `WindowPartition`."""
    b, _, _, c = x.shape
    x = x.reshape(b, h_partitions, w_partitions, p, p, c).transpose(0, 5, 1, 3, 2, 4)
    return tree, x.reshape(b, c, h_partitions * p, w_partitions * p)


def swap_axes_apply(
    tree: StructureTree, global_config: GlobalConfig, x: jax.Array
) -> tuple[StructureTree, jax.Array]:
    """`SwapAxes`: `torch.swapaxes(x, a, b)`."""
    aux: dict[str, Any] = tree["aux"]
    return tree, jnp.swapaxes(x, aux["a"], aux["b"])


register_all(
    "torchvision.models.maxvit.",
    {
        "MaxVit": maxvit_apply,
        "MaxVitBlock": maxvit_block_apply,
        "MaxVitLayer": maxvit_layer_apply,
        "MBConv": mbconv_apply,
        "RelativePositionalMultiHeadAttention": relative_attention_apply,
        "PartitionAttentionLayer": partition_attention_apply,
        "WindowPartition": window_partition_apply,
        "WindowDepartition": window_departition_apply,
        "SwapAxes": swap_axes_apply,
    },
)
