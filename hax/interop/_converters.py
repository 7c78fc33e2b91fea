"""The built-in converters: one per `torch.nn` class with a `hax.nn` counterpart.

Each reads the torch module's constructor arguments from its attributes and calls
the `hax.nn` constructor with them; `convert` loads the weights afterwards.
"""

import itertools
from collections.abc import Callable
from typing import Any, TypeAlias

import jax.numpy as jnp

from .. import nn
from .._module import bind_module
from .._types import Module
from ._from_torch import numpy_dtype

ConvertChild: TypeAlias = Callable[[str, Any], Module]
"""`convert_child(name, torch_child) -> (tree, config)`: converts a child module with
the same registry and `applies`; `name` (`"norm"`, or `"layers/0"` for a grandchild)
places it for error messages."""

Converter: TypeAlias = Callable[[Any, ConvertChild], Module]
"""`converter(torch_module, convert_child) -> (tree, config)`: builds the HAX module of
one torch module (its weights are loaded afterwards by `convert`)."""


def _dtype(module: Any) -> Any:
    """The dtype of the module's first floating-point tensor (float32 if it has none)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.is_floating_point():
            return numpy_dtype(tensor.dtype)
    return jnp.float32


def _has(tensor: Any) -> bool:
    return tensor is not None


def _linear(m: Any, convert_child: ConvertChild) -> Module:
    return nn.Linear(m.in_features, m.out_features, _has(m.bias), dtype=_dtype(m))


def _bilinear(m: Any, convert_child: ConvertChild) -> Module:
    return nn.Bilinear(
        m.in1_features, m.in2_features, m.out_features, _has(m.bias), dtype=_dtype(m)
    )


def _identity(m: Any, convert_child: ConvertChild) -> Module:
    return nn.Identity()


def _flatten(m: Any, convert_child: ConvertChild) -> Module:
    return nn.Flatten(m.start_dim, m.end_dim)


def _conv(constructor: Callable[..., Module]) -> Converter:
    def convert_conv(m: Any, convert_child: ConvertChild) -> Module:
        return constructor(
            m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
            m.groups, _has(m.bias), m.padding_mode, dtype=_dtype(m),
        )  # fmt: skip

    return convert_conv


def _conv_transpose2d(m: Any, convert_child: ConvertChild) -> Module:
    return nn.ConvTranspose2d(
        m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.output_padding,
        m.groups, _has(m.bias), m.dilation, m.padding_mode, dtype=_dtype(m),
    )  # fmt: skip


def _max_pool2d(m: Any, convert_child: ConvertChild) -> Module:
    return nn.MaxPool2d(
        m.kernel_size, m.stride, m.padding, m.dilation, m.return_indices, m.ceil_mode
    )


def _avg_pool2d(m: Any, convert_child: ConvertChild) -> Module:
    return nn.AvgPool2d(
        m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override
    )


def _adaptive_avg_pool2d(m: Any, convert_child: ConvertChild) -> Module:
    return nn.AdaptiveAvgPool2d(m.output_size)


def _batch_norm(constructor: Callable[..., Module]) -> Converter:
    def convert_batch_norm(m: Any, convert_child: ConvertChild) -> Module:
        return constructor(
            m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats,
            bias=not m.affine or _has(m.bias), dtype=_dtype(m),
        )  # fmt: skip

    return convert_batch_norm


def _layer_norm(m: Any, convert_child: ConvertChild) -> Module:
    return nn.LayerNorm(
        m.normalized_shape,
        m.eps,
        m.elementwise_affine,
        bias=not m.elementwise_affine or _has(m.bias),
        dtype=_dtype(m),
    )


def _group_norm(m: Any, convert_child: ConvertChild) -> Module:
    return nn.GroupNorm(
        m.num_groups,
        m.num_channels,
        m.eps,
        m.affine,
        bias=not m.affine or _has(m.bias),
        dtype=_dtype(m),
    )


def _rms_norm(m: Any, convert_child: ConvertChild) -> Module:
    return nn.RMSNorm(m.normalized_shape, m.eps, m.elementwise_affine, dtype=_dtype(m))


def _embedding(m: Any, convert_child: ConvertChild) -> Module:
    return nn.Embedding(
        m.num_embeddings, m.embedding_dim, m.padding_idx, m.max_norm, m.norm_type,
        m.scale_grad_by_freq, m.sparse, dtype=_dtype(m),
    )  # fmt: skip


def _dropout(m: Any, convert_child: ConvertChild) -> Module:
    return nn.Dropout(m.p)


def _relu(m: Any, convert_child: ConvertChild) -> Module:
    return nn.ReLU(m.inplace)


def _gelu(m: Any, convert_child: ConvertChild) -> Module:
    return nn.GELU(m.approximate)


def _silu(m: Any, convert_child: ConvertChild) -> Module:
    return nn.SiLU(m.inplace)


def _tanh(m: Any, convert_child: ConvertChild) -> Module:
    return nn.Tanh()


def _sigmoid(m: Any, convert_child: ConvertChild) -> Module:
    return nn.Sigmoid()


def _softmax(m: Any, convert_child: ConvertChild) -> Module:
    return nn.Softmax(m.dim)


def _log_softmax(m: Any, convert_child: ConvertChild) -> Module:
    return nn.LogSoftmax(m.dim)


def _multihead_attention(m: Any, convert_child: ConvertChild) -> Module:
    return nn.MultiheadAttention(
        m.embed_dim,
        m.num_heads,
        m.dropout,
        bias=_has(m.in_proj_bias),
        add_bias_kv=_has(m.bias_k),
        add_zero_attn=m.add_zero_attn,
        kdim=m.kdim,
        vdim=m.vdim,
        batch_first=m.batch_first,
        dtype=_dtype(m),
    )


def _activation_name(torch: Any, m: Any) -> str:
    """`"relu"` or `"gelu"`: the activations HAX's `TransformerEncoderLayer` takes."""
    activation = m.activation
    if activation is torch.nn.functional.relu or isinstance(activation, torch.nn.ReLU):
        return "relu"
    if activation is torch.nn.functional.gelu or (
        isinstance(activation, torch.nn.GELU) and activation.approximate == "none"
    ):
        return "gelu"
    raise ValueError(
        f"activation {activation!r} is not supported: HAX's TransformerEncoderLayer takes "
        "'relu' or 'gelu' (exact); build the torch layer with one of those, or convert the "
        "layer with `applies={TransformerEncoderLayer: my_apply}`"
    )


def _encoder_layer(torch: Any) -> Converter:
    def convert_encoder_layer(m: Any, convert_child: ConvertChild) -> Module:
        attention = m.self_attn
        return nn.TransformerEncoderLayer(
            attention.embed_dim,
            attention.num_heads,
            m.linear1.out_features,
            m.dropout.p,
            _activation_name(torch, m),
            m.norm1.eps,
            attention.batch_first,
            m.norm_first,
            _has(m.linear1.bias),
            dtype=_dtype(m),
        )

    return convert_encoder_layer


def _encoder(m: Any, convert_child: ConvertChild) -> Module:
    """HAX's `TransformerEncoder` copies one layer `num_layers` times, like PyTorch's; the
    torch layers must therefore agree in everything but their weights."""
    layers = [convert_child(f"layers/{i}", layer) for i, layer in enumerate(m.layers)]
    first = bind_module(*layers[0])[1]
    for i, layer in enumerate(layers[1:], start=1):
        if bind_module(*layer)[1] != first:
            raise ValueError(
                f"layers/{i} differs from layers/0 in its configuration (not only its "
                "weights), but HAX's TransformerEncoder repeats one layer; convert this "
                "model with `applies={TransformerEncoder: my_apply}` to keep its layers as "
                "they are"
            )
    norm = None if m.norm is None else convert_child("norm", m.norm)
    return nn.TransformerEncoder(layers[0], m.num_layers, norm=norm)


def builtin_converters(torch: Any) -> dict[type, Converter]:
    """The converters of the `torch.nn` classes that `hax.nn` has, by exact class."""
    tn = torch.nn
    return {
        tn.Linear: _linear,
        # MultiheadAttention's out_proj: a Linear with the same forward
        getattr(tn.modules.linear, "NonDynamicallyQuantizableLinear", tn.Linear): _linear,
        tn.Bilinear: _bilinear,
        tn.Identity: _identity,
        tn.Flatten: _flatten,
        tn.Conv1d: _conv(nn.Conv1d),
        tn.Conv2d: _conv(nn.Conv2d),
        tn.Conv3d: _conv(nn.Conv3d),
        tn.ConvTranspose2d: _conv_transpose2d,
        tn.MaxPool2d: _max_pool2d,
        tn.AvgPool2d: _avg_pool2d,
        tn.AdaptiveAvgPool2d: _adaptive_avg_pool2d,
        tn.BatchNorm1d: _batch_norm(nn.BatchNorm1d),
        tn.BatchNorm2d: _batch_norm(nn.BatchNorm2d),
        tn.LayerNorm: _layer_norm,
        tn.GroupNorm: _group_norm,
        tn.RMSNorm: _rms_norm,
        tn.Embedding: _embedding,
        tn.Dropout: _dropout,
        tn.ReLU: _relu,
        tn.GELU: _gelu,
        tn.SiLU: _silu,
        tn.Tanh: _tanh,
        tn.Sigmoid: _sigmoid,
        tn.Softmax: _softmax,
        tn.LogSoftmax: _log_softmax,
        tn.MultiheadAttention: _multihead_attention,
        tn.TransformerEncoderLayer: _encoder_layer(torch),
        tn.TransformerEncoder: _encoder,
    }
