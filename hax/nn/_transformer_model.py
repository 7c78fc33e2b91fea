"""`Transformer`: the encoder-decoder model of "Attention Is All You Need", as
`torch.nn.Transformer`, with its submodule names (`encoder.layers.0.self_attn...`,
`decoder.norm.weight`, ...) so a PyTorch `state_dict` maps on by path."""

import itertools
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._config import merge_configs
from .._module import as_module
from .._rng import RngLike, resolve_rng
from .._tree import structure_tree_map
from .._types import GlobalConfig, InputArray, Module, StructureTree
from .._validate import validate
from ._attention import Mask, _xavier_uniform
from ._layer import ConvertChild, layer
from ._norm import LayerNorm
from ._transformer import TransformerEncoder, TransformerEncoderLayer, children_runner
from ._transformer_decoder import TransformerDecoder, TransformerDecoderLayer


def transformer_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    src: Float[InputArray, "... d_model"],
    tgt: Float[InputArray, "... d_model"],
    src_mask: Mask = None,
    tgt_mask: Mask = None,
    memory_mask: Mask = None,
    src_key_padding_mask: Mask = None,
    tgt_key_padding_mask: Mask = None,
    memory_key_padding_mask: Mask = None,
    src_is_causal: bool | None = None,
    tgt_is_causal: bool | None = None,
    memory_is_causal: bool = False,
) -> tuple[StructureTree, Float[Array, "... d_model"]]:
    """`decoder(tgt, encoder(src))`, as `torch.nn.Transformer.forward`.

    `src` is `(S, N, E)` and `tgt` `(T, N, E)` (`(N, S, E)`, `(N, T, E)` with
    `batch_first`; `(S, E)`, `(T, E)` unbatched). `src_mask` `(S, S)`, `tgt_mask`
    `(T, T)` (e.g. `hax.nn.generate_square_subsequent_mask(T)`) and `memory_mask`
    `(T, S)` are attention masks, the `*_key_padding_mask`s `(N, S)`, `(N, T)`, `(N, S)`
    (bool `True`: ignore that position); the `*_is_causal` flags are hints, as in
    PyTorch (`None`: HAX applies the mask, which is the same).
    """
    aux = tree["aux"]
    batch_axis = 0 if aux["batch_first"] else 1
    if src.ndim == 3 and (tgt.ndim != 3 or src.shape[batch_axis] != tgt.shape[batch_axis]):
        raise ValueError(
            f"Transformer: the batch sizes of src {tuple(src.shape)} and tgt "
            f"{tuple(tgt.shape)} must be equal (axis {batch_axis}, batch_first="
            f"{aux['batch_first']})"
        )
    if src.shape[-1] != aux["d_model"] or tgt.shape[-1] != aux["d_model"]:
        raise ValueError(
            f"Transformer: the feature sizes of src {tuple(src.shape)} and tgt "
            f"{tuple(tgt.shape)} must be d_model={aux['d_model']}"
        )
    children, run = children_runner(tree, global_config)
    memory = run(
        "encoder",
        src,
        mask=src_mask,
        src_key_padding_mask=src_key_padding_mask,
        is_causal=src_is_causal,
    )
    out = run(
        "decoder",
        tgt,
        memory,
        tgt_mask=tgt_mask,
        memory_mask=memory_mask,
        tgt_key_padding_mask=tgt_key_padding_mask,
        memory_key_padding_mask=memory_key_padding_mask,
        tgt_is_causal=tgt_is_causal,
        memory_is_causal=memory_is_causal,
    )
    return {**tree, "submodules": children}, out


def _xavier_matrices(tree: StructureTree, key: jax.Array) -> StructureTree:
    """PyTorch's `Transformer._reset_parameters`: every param of more than one dim (every
    weight matrix, in every layer) redrawn from xavier-uniform, each with its own key."""
    index = itertools.count()

    def redraw(value: Any) -> Any:
        if getattr(value, "ndim", 0) < 2:
            return value
        return _xavier_uniform(jax.random.fold_in(key, next(index)), value.shape, value.dtype)

    def node(node: StructureTree, path: tuple[str, ...]) -> StructureTree:
        return {**node, "params": jax.tree.map(redraw, node["params"])}

    redrawn: StructureTree = structure_tree_map(node, tree)
    return redrawn


def _custom(module: Module | None, name: str) -> Module | None:
    if module is None:
        return None
    custom = as_module(module)
    if custom is None:
        raise TypeError(
            f"Transformer: {name} is a {type(module).__name__}; expected a module "
            "`(tree, config)` such as hax.nn.TransformerEncoder(...), or None"
        )
    return custom


def Transformer(
    d_model: int = 512,
    nhead: int = 8,
    num_encoder_layers: int = 6,
    num_decoder_layers: int = 6,
    dim_feedforward: int = 2048,
    dropout: float = 0.1,
    activation: str = "relu",
    custom_encoder: Module | None = None,
    custom_decoder: Module | None = None,
    layer_norm_eps: float = 1e-5,
    batch_first: bool = False,
    norm_first: bool = False,
    bias: bool = True,
    *,
    rng: RngLike | None = None,
    dtype: Any = jnp.float32,
) -> Module:
    """An encoder-decoder Transformer, as `torch.nn.Transformer`; run with
    `transformer_apply`.

    Submodules: `encoder`, a `TransformerEncoder` of `num_encoder_layers`
    `TransformerEncoderLayer`s with a final `LayerNorm` (`encoder/norm`), and
    `decoder`, a `TransformerDecoder` of `num_decoder_layers` `TransformerDecoderLayer`s
    with its final norm, all built from the shared arguments, or `custom_encoder` and
    `custom_decoder` (modules) in their place. As PyTorch's `_reset_parameters`, every
    param of more than one dimension is then redrawn from xavier-uniform, the custom
    modules' included, so the layers no longer share their initial weights. Aux:
    `d_model`, `nhead`, `batch_first`. The config is the merge of the parts'
    (`{"train_mode": True}`). The causal mask of `Transformer.generate_square_subsequent_mask`
    is `hax.nn.generate_square_subsequent_mask`.

    **Arguments:** as PyTorch's; `activation` is `"relu"` or `"gelu"` (a function
    cannot be stored in aux). `rng` and `dtype` as for `TransformerEncoderLayer`.
    """
    encoder_key, decoder_key, init_key = jax.random.split(resolve_rng(rng, "Transformer"), 3)
    # the layers' positional arguments (the encoder's and decoder's are the same)
    args = (d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps)
    flags = (batch_first, norm_first, bias)
    encoder = _custom(custom_encoder, "custom_encoder")
    if encoder is None:
        encoder_layer = TransformerEncoderLayer(*args, *flags, rng=encoder_key, dtype=dtype)
        norm = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        encoder = TransformerEncoder(encoder_layer, num_encoder_layers, norm)
    decoder = _custom(custom_decoder, "custom_decoder")
    if decoder is None:
        decoder_layer = TransformerDecoderLayer(*args, *flags, rng=decoder_key, dtype=dtype)
        norm = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        decoder = TransformerDecoder(decoder_layer, num_decoder_layers, norm)
    tree = _TRANSFORMER.node(
        {},
        {},
        {"encoder": encoder[0], "decoder": decoder[0]},
        d_model=d_model,
        nhead=nhead,
        batch_first=batch_first,
    )
    config = merge_configs(encoder[1], decoder[1])
    return validate(_xavier_matrices(tree, init_key), config), config


def _convert(m: Any, convert_child: ConvertChild) -> Module:
    return Transformer(
        m.d_model,
        m.nhead,
        custom_encoder=convert_child("encoder", m.encoder),
        custom_decoder=convert_child("decoder", m.decoder),
        batch_first=m.batch_first,
    )


_TRANSFORMER = layer(
    "Transformer",
    transformer_apply,
    aux={"d_model": int, "nhead": int, "batch_first": bool},
    torch="torch.nn.Transformer",
    converter=_convert,
)
