"""`TransformerDecoderLayer`, `TransformerDecoder`: PyTorch's submodule names and forward.

Submodule names follow PyTorch, so a PyTorch `state_dict` maps on by path:
`layers.0.multihead_attn.in_proj_weight` is `layers/0/multihead_attn/params/in_proj_weight`.
The blocks and the layer stack are the encoder's (`hax.nn._transformer`).
"""

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._config import merge_configs
from .._rng import RngLike, resolve_rng
from .._types import GlobalConfig, InputArray, Module, StructureTree
from .._validate import validate
from ._attention import Mask
from ._layer import ConvertChild, layer
from ._transformer import (
    attention_block,
    check_activation,
    children_runner,
    feed_forward_block,
    layer_arguments,
    layer_modules,
    make_stack,
    residual_blocks,
    run_stack,
    stack_converter,
)

# ---------------------------------------------------------------- TransformerDecoderLayer


def transformer_decoder_layer_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    tgt: Float[InputArray, "... d_model"],
    memory: Float[InputArray, "... d_model"],
    tgt_mask: Mask = None,
    memory_mask: Mask = None,
    tgt_key_padding_mask: Mask = None,
    memory_key_padding_mask: Mask = None,
    tgt_is_causal: bool = False,
    memory_is_causal: bool = False,
) -> tuple[StructureTree, Float[Array, "... d_model"]]:
    """Self-attention, attention to `memory`, then the feed-forward block, each with a
    residual connection.

    Post-norm (`norm_first=False`): `x = norm1(x + sa(x)); x = norm2(x + mha(x, memory));
    x = norm3(x + ff(x))`. Pre-norm: `x = x + sa(norm1(x)); x = x + mha(norm2(x),
    memory); x = x + ff(norm3(x))`. `sa` uses `self_attn` with `tgt_mask` and
    `tgt_key_padding_mask` and `dropout1`; `mha` uses `multihead_attn` with
    `memory_mask` and `memory_key_padding_mask` and `dropout2`; `ff` is
    `dropout3(linear2(dropout(activation(linear1(x)))))`.

    `tgt` is `(T, N, E)`, `(N, T, E)` with `batch_first`, or `(T, E)`; `memory` likewise
    with its own length `S`. The masks are `MultiheadAttention`'s `attn_mask` and
    `key_padding_mask`; `tgt_is_causal`/`memory_is_causal` are its `is_causal` hint.
    """
    aux: dict[str, Any] = tree["aux"]
    children, run = children_runner(tree, global_config)
    memory = jnp.asarray(memory)

    def self_attention(x: jax.Array) -> jax.Array:
        mask, padding = tgt_mask, tgt_key_padding_mask
        return attention_block(run, "self_attn", "dropout1", x, x, mask, padding, tgt_is_causal)

    def cross_attention(x: jax.Array) -> jax.Array:
        mask, padding, causal = memory_mask, memory_key_padding_mask, memory_is_causal
        return attention_block(run, "multihead_attn", "dropout2", x, memory, mask, padding, causal)

    def feed_forward(x: jax.Array) -> jax.Array:
        return feed_forward_block(run, aux["activation"], "dropout3", x)

    blocks = [("norm1", self_attention), ("norm2", cross_attention), ("norm3", feed_forward)]
    x = residual_blocks(run, aux["norm_first"], blocks, jnp.asarray(tgt))
    return {**tree, "submodules": children}, x


def TransformerDecoderLayer(
    d_model: int,
    nhead: int,
    dim_feedforward: int = 2048,
    dropout: float = 0.1,
    activation: str = "relu",
    layer_norm_eps: float = 1e-5,
    batch_first: bool = False,
    norm_first: bool = False,
    bias: bool = True,
    *,
    rng: RngLike | None = None,
    dtype: Any = jnp.float32,
) -> Module:
    """A Transformer decoder layer, as `torch.nn.TransformerDecoderLayer`; run with
    `transformer_decoder_layer_apply`.

    Submodules, in PyTorch's order and with its names: `self_attn` and `multihead_attn`
    (`MultiheadAttention(d_model, nhead, dropout, bias, batch_first)`), `linear1`,
    `dropout`, `linear2`, `norm1`, `norm2`, `norm3`, `dropout1`, `dropout2`,
    `dropout3`, each initialised as PyTorch's. Aux: `activation` and `norm_first`. The
    returned config is `{"train_mode": True}`. Arguments as for
    `TransformerEncoderLayer` (`activation` is `"relu"` or `"gelu"`).
    """
    who = "TransformerDecoderLayer"
    check_activation(activation, who)
    modules = layer_modules(
        3, d_model, nhead, dim_feedforward, dropout, layer_norm_eps, batch_first, bias,
        resolve_rng(rng, who), dtype,
    )  # fmt: skip
    tree = _TRANSFORMER_DECODER_LAYER.node(
        {},
        {},
        {name: module[0] for name, module in modules.items()},
        activation=activation,
        norm_first=norm_first,
    )
    config = merge_configs(*(module[1] for module in modules.values()))
    return validate(tree, config), config


def _convert_decoder_layer(m: Any, convert_child: ConvertChild) -> Module:
    args, kwargs = layer_arguments(m)
    return TransformerDecoderLayer(*args, **kwargs)


_TRANSFORMER_DECODER_LAYER = layer(
    "TransformerDecoderLayer",
    transformer_decoder_layer_apply,
    aux={"activation": str, "norm_first": bool},
    torch="torch.nn.TransformerDecoderLayer",
    converter=_convert_decoder_layer,
)

# ---------------------------------------------------------------- TransformerDecoder


def transformer_decoder_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    tgt: Float[InputArray, "... d_model"],
    memory: Float[InputArray, "... d_model"],
    tgt_mask: Mask = None,
    memory_mask: Mask = None,
    tgt_key_padding_mask: Mask = None,
    memory_key_padding_mask: Mask = None,
    tgt_is_causal: bool | None = None,
    memory_is_causal: bool = False,
) -> tuple[StructureTree, Float[Array, "... d_model"]]:
    """Run `layers/0`, `layers/1`, ... in order, each as `layer(x, memory, tgt_mask=...,
    memory_mask=..., ...)`, then `norm`.

    `tgt_is_causal=None` (PyTorch then inspects `tgt_mask`'s values) is passed on as
    `False`, which gives the same result since HAX always applies `tgt_mask`.
    """
    return run_stack(
        tree,
        global_config,
        "TransformerDecoder",
        jnp.asarray(tgt),
        memory,
        tgt_mask=tgt_mask,
        memory_mask=memory_mask,
        tgt_key_padding_mask=tgt_key_padding_mask,
        memory_key_padding_mask=memory_key_padding_mask,
        tgt_is_causal=tgt_is_causal is True,
        memory_is_causal=memory_is_causal,
    )


def TransformerDecoder(
    decoder_layer: Module, num_layers: int, norm: Module | None = None
) -> Module:
    """A stack of `num_layers` decoder layers, as `torch.nn.TransformerDecoder`; run with
    `transformer_decoder_apply`.

    Like PyTorch, every layer starts as a copy of `decoder_layer`, with the same
    weights, under `layers/0`, ...; the optional final `norm` is submodule `norm`. Each
    copy's PRNG-key buffers are folded with its index, so the layers draw different
    dropout masks (see `TransformerEncoder`). Any module whose apply takes `(tgt,
    memory, tgt_mask=, memory_mask=, tgt_key_padding_mask=, memory_key_padding_mask=,
    tgt_is_causal=, memory_is_causal=)` works as the layer. The config is the merge
    of the layer's and the norm's.
    """
    return make_stack(_TRANSFORMER_DECODER, "decoder_layer", decoder_layer, num_layers, norm)


_TRANSFORMER_DECODER = layer(
    "TransformerDecoder",
    transformer_decoder_apply,
    torch="torch.nn.TransformerDecoder",
    converter=stack_converter(TransformerDecoder),
)
