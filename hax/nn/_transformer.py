"""`TransformerEncoderLayer`, `TransformerEncoder`: PyTorch's submodule names and forward.

Submodule names follow PyTorch, so a PyTorch `state_dict` maps on by path:
`layers.0.self_attn.in_proj_weight` is `layers/0/self_attn/params/in_proj_weight`.
The blocks, the layer stack and the converters here serve the decoder
(`hax.nn._transformer_decoder`) too.
"""

from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike
from jaxtyping import Array, Float

from .._config import merge_configs
from .._module import apply_tree, as_module, bind_module
from .._rng import RngLike, resolve_rng
from .._torch_attrs import dtype_of, has
from .._tree import numbered_children, structure_tree_map
from .._types import GlobalConfig, InputArray, Module, StructureTree
from .._validate import validate
from ._attention import Mask, MultiheadAttention
from ._dropout import Dropout
from ._functional import gelu, relu
from ._layer import ConvertChild, Converter, Layer, layer
from ._linear import Linear
from ._norm import LayerNorm

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"relu": relu, "gelu": gelu}

_CALLABLE_ACTIVATION = (
    "{who}: activation must be 'relu' or 'gelu', found a {kind}. A function cannot be "
    "stored in a node's aux (static, JSON-like values only). For another activation, "
    "write a layer of your own from these parts (see hax.StateOrganizer), or replace "
    "this one's apply."
)


def generate_square_subsequent_mask(sz: int, dtype: DTypeLike = jnp.float32) -> jax.Array:
    """The `(sz, sz)` causal mask, as `torch.nn.Transformer.generate_square_subsequent_mask`:
    `-inf` above the diagonal (key `j > i` hidden from query `i`), 0 elsewhere."""
    return jnp.where(jnp.triu(jnp.ones((sz, sz), jnp.bool_), k=1), -jnp.inf, 0.0).astype(dtype)


# ---------------------------------------------------------------- blocks shared with the decoder

Run = Callable[..., Any]
"""`run(name, *args, **kwargs)`: apply the child `name`, keeping its new tree."""


def children_runner(
    tree: StructureTree, global_config: GlobalConfig
) -> tuple[dict[str, StructureTree], Run]:
    """A copy of the node's children and `run`, which applies one by name and stores its
    new tree in that copy (for the node's new tree)."""
    children = dict(tree["submodules"])

    def run(name: str, *args: Any, **kwargs: Any) -> Any:
        children[name], out = apply_tree(children[name], global_config, *args, **kwargs)
        return out

    return children, run


def attention_block(
    run: Run,
    attention: str,
    dropout: str,
    x: jax.Array,
    memory: jax.Array,
    mask: Mask,
    key_padding_mask: Mask,
    is_causal: bool,
) -> jax.Array:
    """`dropout(attention(x, memory, memory, mask, key_padding_mask)[0])`: PyTorch's
    `_sa_block` (with `memory = x`) and `_mha_block`."""
    out, _ = run(
        attention,
        x,
        memory,
        memory,
        attn_mask=mask,
        key_padding_mask=key_padding_mask,
        need_weights=False,
        is_causal=is_causal,
    )
    return run(dropout, out)  # type: ignore[no-any-return]  # a child's output


def feed_forward_block(run: Run, activation: str, dropout: str, x: jax.Array) -> jax.Array:
    """`dropout(linear2(dropout(activation(linear1(x)))))`: PyTorch's `_ff_block`."""
    h = run("dropout", _ACTIVATIONS[activation](run("linear1", x)))
    return run(dropout, run("linear2", h))  # type: ignore[no-any-return]  # as above


def residual_blocks(
    run: Run,
    norm_first: bool,
    blocks: Iterable[tuple[str, Callable[[jax.Array], jax.Array]]],
    x: jax.Array,
) -> jax.Array:
    """`x` through each `(norm, block)` with a residual connection, as torch's Transformer
    layers: pre-norm (`x + block(norm(x))`) when `norm_first`, else post-norm
    (`norm(x + block(x))`)."""
    for norm, block in blocks:
        x = x + block(run(norm, x)) if norm_first else run(norm, x + block(x))
    return x


def check_activation(activation: Any, who: str) -> None:
    """Raise unless `activation` is `"relu"` or `"gelu"` (a function cannot be stored in aux)."""
    if not isinstance(activation, str):
        raise TypeError(_CALLABLE_ACTIVATION.format(who=who, kind=type(activation).__name__))
    if activation not in _ACTIVATIONS:
        raise ValueError(f"{who}: activation should be 'relu' or 'gelu', not {activation!r}")


def layer_modules(
    blocks: int,
    d_model: int,
    nhead: int,
    dim_feedforward: int,
    dropout: float,
    layer_norm_eps: float,
    batch_first: bool,
    bias: bool,
    key: jax.Array,
    dtype: Any,
) -> dict[str, Module]:
    """The submodules of an encoder (2 blocks) or decoder (3 blocks) layer, with PyTorch's
    names, order and initialisation: `self_attn` (`multihead_attn`), `linear1`,
    `dropout`, `linear2`, `norm1`.., `dropout1`.."""
    keys = jax.random.split(key, 2 * blocks + 2)
    # keys in the encoder layer's order (self_attn, linear1, dropout, linear2,
    # dropout1, ...); the decoder's multihead_attn takes the last one
    attention = {
        "self_attn": keys[0],
        **({"multihead_attn": keys[2 * blocks + 1]} if blocks == 3 else {}),
    }
    modules: dict[str, Module] = {
        name: MultiheadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
            rng=k, dtype=dtype,
        )
        for name, k in attention.items()
    }  # fmt: skip
    modules["linear1"] = Linear(d_model, dim_feedforward, bias=bias, rng=keys[1], dtype=dtype)
    modules["dropout"] = Dropout(dropout, rng=keys[2])
    modules["linear2"] = Linear(dim_feedforward, d_model, bias=bias, rng=keys[3], dtype=dtype)
    for i in range(1, blocks + 1):
        modules[f"norm{i}"] = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
    for i in range(1, blocks + 1):
        modules[f"dropout{i}"] = Dropout(dropout, rng=keys[3 + i])
    return modules


# ---------------------------------------------------------------- TransformerEncoderLayer


def transformer_encoder_layer_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    src: Float[InputArray, "... d_model"],
    src_mask: Mask = None,
    src_key_padding_mask: Mask = None,
    is_causal: bool = False,
) -> tuple[StructureTree, Float[Array, "... d_model"]]:
    """Self-attention then the feed-forward block, each with a residual connection.

    Post-norm (`norm_first=False`): `x = norm1(x + sa(x)); x = norm2(x + ff(x))`.
    Pre-norm (`norm_first=True`): `x = x + sa(norm1(x)); x = x + ff(norm2(x))`, where
    `sa(x) = dropout1(self_attn(x, x, x, src_mask, src_key_padding_mask)[0])` and
    `ff(x) = dropout2(linear2(dropout(activation(linear1(x)))))`.

    `src` is `(S, N, E)`, `(N, S, E)` with `batch_first`, or `(S, E)`; `src_mask` and
    `src_key_padding_mask` are `MultiheadAttention`'s `attn_mask` and
    `key_padding_mask`; `is_causal` is the hint described there.
    """
    aux: dict[str, Any] = tree["aux"]
    children, run = children_runner(tree, global_config)

    def self_attention(x: jax.Array) -> jax.Array:
        mask, padding = src_mask, src_key_padding_mask
        return attention_block(run, "self_attn", "dropout1", x, x, mask, padding, is_causal)

    def feed_forward(x: jax.Array) -> jax.Array:
        return feed_forward_block(run, aux["activation"], "dropout2", x)

    blocks = [("norm1", self_attention), ("norm2", feed_forward)]
    x = residual_blocks(run, aux["norm_first"], blocks, jnp.asarray(src))
    return {**tree, "submodules": children}, x


def TransformerEncoderLayer(
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
    """A Transformer encoder layer, as `torch.nn.TransformerEncoderLayer`; run with
    `transformer_encoder_layer_apply`.

    Submodules, in PyTorch's order and with its names: `self_attn`
    (`MultiheadAttention(d_model, nhead, dropout, bias, batch_first)`), `linear1`
    (`d_model -> dim_feedforward`), `dropout`, `linear2` (`dim_feedforward -> d_model`),
    `norm1`, `norm2` (`LayerNorm(d_model, layer_norm_eps, bias)`), `dropout1`,
    `dropout2` (`Dropout(dropout)`), each initialised as PyTorch's. Aux:
    `activation` and `norm_first`. The returned config is `{"train_mode": True}`.

    **Arguments:** as PyTorch's.
    - `activation`: `"relu"` or `"gelu"` (exact). PyTorch also takes a function; HAX
      does not, as aux holds only static JSON-like values.
    - `norm_first`: pre-norm (LayerNorm before each block) instead of post-norm.
    - `rng`: a PRNG key (or int seed); defaults to the next key of `hax.rng_context`.
    - `dtype`: the params' dtype.
    """
    who = "TransformerEncoderLayer"
    check_activation(activation, who)
    modules = layer_modules(
        2, d_model, nhead, dim_feedforward, dropout, layer_norm_eps, batch_first, bias,
        resolve_rng(rng, who), dtype,
    )  # fmt: skip
    tree = _TRANSFORMER_ENCODER_LAYER.node(
        {},
        {},
        {name: module[0] for name, module in modules.items()},
        activation=activation,
        norm_first=norm_first,
    )
    config = merge_configs(*(module[1] for module in modules.values()))
    return validate(tree, config), config


def activation_name(m: Any) -> str:
    """`"relu"` or `"gelu"`: the activations HAX's Transformer layers take."""
    import torch  # loaded already: `m` is a torch module

    activation = m.activation
    if activation is torch.nn.functional.relu or isinstance(activation, torch.nn.ReLU):
        return "relu"
    if activation is torch.nn.functional.gelu or (
        isinstance(activation, torch.nn.GELU) and activation.approximate == "none"
    ):
        return "gelu"
    kind = type(m).__name__
    raise ValueError(
        f"activation {activation!r} is not supported: HAX's {kind} takes 'relu' or 'gelu' "
        f"(exact); build the torch layer with one of those, or convert the layer with "
        f"`applies={{{kind}: my_apply}}`"
    )


def layer_arguments(m: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The constructor arguments of a torch `TransformerEncoderLayer` or
    `TransformerDecoderLayer`, which take the same ones."""
    attention = m.self_attn
    args = (
        attention.embed_dim,
        attention.num_heads,
        m.linear1.out_features,
        m.dropout.p,
        activation_name(m),
        m.norm1.eps,
        attention.batch_first,
        m.norm_first,
        has(m.linear1.bias),
    )
    return args, {"dtype": dtype_of(m)}


def _convert_encoder_layer(m: Any, convert_child: ConvertChild) -> Module:
    args, kwargs = layer_arguments(m)
    return TransformerEncoderLayer(*args, **kwargs)


_TRANSFORMER_ENCODER_LAYER = layer(
    "TransformerEncoderLayer",
    transformer_encoder_layer_apply,
    aux={"activation": str, "norm_first": bool},
    torch="torch.nn.TransformerEncoderLayer",
    converter=_convert_encoder_layer,
)

# ---------------------------------------------------------------- TransformerEncoder


def module_list_apply(
    tree: StructureTree, global_config: GlobalConfig, /, *args: Any, **kwargs: Any
) -> Any:
    """The apply of a list of layers (`torch.nn.ModuleList`): always raises."""
    raise TypeError(
        "this node is a list of layers (as torch.nn.ModuleList) and has no forward of its "
        "own; its parent runs the children '0', '1', ... one by one. Run the parent, or a "
        "child such as tree['submodules']['0']."
    )


def _copy_layer(tree: StructureTree, index: int) -> StructureTree:
    """A copy of `tree` with new dicts at every node (a node appears once in a tree) and
    every PRNG-key buffer folded with `index`, so the copies draw different dropout
    masks (PyTorch's copies share one global generator)."""

    def fold(x: Any) -> Any:
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.fold_in(x, index)
        return x

    def copy(node: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
        return {
            **node,
            "params": jax.tree.map(lambda x: x, node["params"]),
            "buffers": jax.tree.map(fold, node["buffers"]),
            "aux": dict(node["aux"]),
        }

    copied: StructureTree = structure_tree_map(copy, tree)
    return copied


def transformer_encoder_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    src: Float[InputArray, "... d_model"],
    mask: Mask = None,
    src_key_padding_mask: Mask = None,
    is_causal: bool | None = None,
) -> tuple[StructureTree, Float[Array, "... d_model"]]:
    """Run `layers/0`, `layers/1`, ... in order, each as
    `layer(x, src_mask=mask, is_causal=..., src_key_padding_mask=...)`, then `norm`.

    `is_causal` is the hint of `MultiheadAttention`: `None` (PyTorch then inspects
    `mask`'s values) is passed on as `False`, which gives the same result since HAX
    always applies `mask`.
    """
    return run_stack(
        tree,
        global_config,
        "TransformerEncoder",
        jnp.asarray(src),
        src_mask=mask,
        is_causal=is_causal is True,
        src_key_padding_mask=src_key_padding_mask,
    )


def run_stack(
    tree: StructureTree,
    global_config: GlobalConfig,
    who: str,
    x: jax.Array,
    *args: Any,
    **kwargs: Any,
) -> tuple[StructureTree, jax.Array]:
    """`x = layer(x, *args, **kwargs)` for `layers/0`, `layers/1`, ..., then `norm` if any."""
    children = dict(tree["submodules"])
    layers = children["layers"]
    layer_trees = dict(layers["submodules"])
    for name in numbered_children(layers, f"{who}.layers"):
        layer_trees[name], x = apply_tree(layer_trees[name], global_config, x, *args, **kwargs)
    children["layers"] = {**layers, "submodules": layer_trees}
    if "norm" in children:
        children["norm"], x = apply_tree(children["norm"], global_config, x)
    return {**tree, "submodules": children}, x


def TransformerEncoder(
    encoder_layer: Module,
    num_layers: int,
    norm: Module | None = None,
    enable_nested_tensor: bool = True,
    mask_check: bool = True,
) -> Module:
    """A stack of `num_layers` encoder layers, as `torch.nn.TransformerEncoder`; run with
    `transformer_encoder_apply`.

    Like PyTorch, every layer starts as a copy of `encoder_layer`, with the same
    weights: submodule `layers` holds `"0"`, ..., `"num_layers - 1"` (PyTorch's
    `layers.0.self_attn.in_proj_weight` is `layers/0/self_attn/params/in_proj_weight`),
    and the optional final `norm` is submodule `norm` (absent when `None`, as in
    PyTorch's `state_dict`). Each copy's PRNG-key buffers are folded with its index,
    so the layers draw different dropout masks. The `layers` node has no forward of
    its own; calling it raises.

    **Arguments:**
    - `encoder_layer`: a module, e.g. `TransformerEncoderLayer(...)`; any module whose
      apply takes `(src, src_mask=, is_causal=, src_key_padding_mask=)` works.
    - `num_layers`: the number of copies.
    - `norm`: a module applied to the output, e.g. `LayerNorm(d_model)`.
    - `enable_nested_tensor`, `mask_check`: accepted for PyTorch compatibility and
      ignored. They select PyTorch's nested-tensor fast path in evaluation, which
      returns 0 at padded positions; HAX always computes padded positions as
      PyTorch's regular path does (the non-padded outputs are the same).

    The config is the merge of the layer's and the norm's.
    """
    return make_stack(_TRANSFORMER_ENCODER, "encoder_layer", encoder_layer, num_layers, norm)


def make_stack(
    record: Layer, arg: str, layer_module: Module, num_layers: int, norm: Module | None
) -> Module:
    """A node of `record` holding `num_layers` copies of `layer_module` (the argument
    `arg`) under `layers` and the optional `norm`; the config is the merge of theirs."""
    who = record.kind
    stacked = as_module(layer_module)
    if stacked is None:
        raise TypeError(
            f"{who}: {arg} is a {type(layer_module).__name__}; expected a module "
            f"`(tree, config)` such as hax.nn.{who}Layer(512, 8)"
        )
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 0:
        raise ValueError(f"{who}: num_layers must be a non-negative int, found {num_layers!r}")
    layer_tree, config = stacked
    configs = [config]
    layers = _MODULE_LIST.node(
        {}, {}, {str(i): _copy_layer(layer_tree, i) for i in range(num_layers)}
    )
    submodules = {"layers": layers}
    if norm is not None:
        norm_module = as_module(norm)
        if norm_module is None:
            raise TypeError(
                f"{who}: norm is a {type(norm).__name__}; expected a module "
                "`(tree, config)` such as hax.nn.LayerNorm(d_model), or None"
            )
        submodules["norm"] = norm_module[0]
        configs.append(norm_module[1])
    merged = merge_configs(*configs)
    return validate(record.node({}, {}, submodules), merged), merged


def stack_converter(constructor: Callable[..., Module]) -> Converter:
    """The converter of a torch layer stack (`layers`, `num_layers`, `norm`). HAX's stacks
    copy one layer `num_layers` times, like PyTorch's; the torch layers must therefore
    agree in everything but their weights."""

    def convert(m: Any, convert_child: ConvertChild) -> Module:
        who = type(m).__name__
        layers = [convert_child(f"layers/{i}", child) for i, child in enumerate(m.layers)]
        first = bind_module(*layers[0])[1]
        for i, child in enumerate(layers[1:], start=1):
            if bind_module(*child)[1] != first:
                raise ValueError(
                    f"layers/{i} differs from layers/0 in its configuration (not only its "
                    f"weights), but HAX's {who} repeats one layer; convert this model with "
                    f"`applies={{{who}: my_apply}}` to keep its layers as they are"
                )
        norm = None if m.norm is None else convert_child("norm", m.norm)
        return constructor(layers[0], m.num_layers, norm=norm)

    return convert


_MODULE_LIST = layer("ModuleList", module_list_apply)
_TRANSFORMER_ENCODER = layer(
    "TransformerEncoder",
    transformer_encoder_apply,
    torch="torch.nn.TransformerEncoder",
    converter=stack_converter(TransformerEncoder),
)
