"""PyTorch-named layers. Each constructor returns a module `(tree, global_config)`.

Parameter names, layouts, argument defaults and initialisation follow PyTorch, so a
PyTorch `state_dict` maps onto `tree["params"]`/`tree["buffers"]` by name.
`hax.nn.functional` has the pure functions and losses.

Each layer is one `Layer` record, declared with `layer(...)` in its own file: its
spec, the torch classes it converts from and their converter, and whether it computes
in float32 under mixed precision. `registered_layers()` lists them by kind.
"""

from . import functional as functional
from ._activation import (
    ELU as ELU,
    GELU as GELU,
    Hardsigmoid as Hardsigmoid,
    Hardswish as Hardswish,
    LeakyReLU as LeakyReLU,
    LogSoftmax as LogSoftmax,
    Mish as Mish,
    ReLU as ReLU,
    Sigmoid as Sigmoid,
    SiLU as SiLU,
    Softmax as Softmax,
    Softplus as Softplus,
    Tanh as Tanh,
    elu_apply as elu_apply,
    gelu_apply as gelu_apply,
    hardsigmoid_apply as hardsigmoid_apply,
    hardswish_apply as hardswish_apply,
    leaky_relu_apply as leaky_relu_apply,
    log_softmax_apply as log_softmax_apply,
    mish_apply as mish_apply,
    relu_apply as relu_apply,
    sigmoid_apply as sigmoid_apply,
    silu_apply as silu_apply,
    softmax_apply as softmax_apply,
    softplus_apply as softplus_apply,
    tanh_apply as tanh_apply,
)
from ._attention import (
    MultiheadAttention as MultiheadAttention,
    multihead_attention_apply as multihead_attention_apply,
)
from ._basic import (
    Bilinear as Bilinear,
    Flatten as Flatten,
    Identity as Identity,
    Unflatten as Unflatten,
    bilinear_apply as bilinear_apply,
    flatten_apply as flatten_apply,
    identity_apply as identity_apply,
    unflatten_apply as unflatten_apply,
)
from ._conv import (
    Conv1d as Conv1d,
    Conv2d as Conv2d,
    Conv3d as Conv3d,
    ConvTranspose1d as ConvTranspose1d,
    ConvTranspose2d as ConvTranspose2d,
    conv1d_apply as conv1d_apply,
    conv2d_apply as conv2d_apply,
    conv3d_apply as conv3d_apply,
    conv_transpose1d_apply as conv_transpose1d_apply,
    conv_transpose2d_apply as conv_transpose2d_apply,
)
from ._dropout import (
    Dropout as Dropout,
    Dropout1d as Dropout1d,
    Dropout2d as Dropout2d,
    dropout1d_apply as dropout1d_apply,
    dropout2d_apply as dropout2d_apply,
    dropout_apply as dropout_apply,
)
from ._embedding import Embedding as Embedding, embedding_apply as embedding_apply
from ._layer import (
    Layer as Layer,
    from_attributes as from_attributes,
    layer as layer,
    registered_layers as registered_layers,
)
from ._linear import Linear as Linear, linear_apply as linear_apply
from ._norm import (
    BatchNorm1d as BatchNorm1d,
    BatchNorm2d as BatchNorm2d,
    GroupNorm as GroupNorm,
    InstanceNorm1d as InstanceNorm1d,
    InstanceNorm2d as InstanceNorm2d,
    LayerNorm as LayerNorm,
    RMSNorm as RMSNorm,
    batch_norm1d_apply as batch_norm1d_apply,
    batch_norm2d_apply as batch_norm2d_apply,
    group_norm_apply as group_norm_apply,
    instance_norm1d_apply as instance_norm1d_apply,
    instance_norm2d_apply as instance_norm2d_apply,
    layer_norm_apply as layer_norm_apply,
    rms_norm_apply as rms_norm_apply,
)
from ._pool import (
    AdaptiveAvgPool1d as AdaptiveAvgPool1d,
    AdaptiveAvgPool2d as AdaptiveAvgPool2d,
    AdaptiveMaxPool2d as AdaptiveMaxPool2d,
    AvgPool1d as AvgPool1d,
    AvgPool2d as AvgPool2d,
    MaxPool1d as MaxPool1d,
    MaxPool2d as MaxPool2d,
    adaptive_avg_pool1d_apply as adaptive_avg_pool1d_apply,
    adaptive_avg_pool2d_apply as adaptive_avg_pool2d_apply,
    adaptive_max_pool2d_apply as adaptive_max_pool2d_apply,
    avg_pool1d_apply as avg_pool1d_apply,
    avg_pool2d_apply as avg_pool2d_apply,
    max_pool1d_apply as max_pool1d_apply,
    max_pool2d_apply as max_pool2d_apply,
)
from ._prelu import PReLU as PReLU, prelu_apply as prelu_apply
from ._relu6 import ReLU6 as ReLU6, relu6_apply as relu6_apply
from ._sequential import Sequential as Sequential, sequential_apply as sequential_apply
from ._transformer import (
    TransformerEncoder as TransformerEncoder,
    TransformerEncoderLayer as TransformerEncoderLayer,
    generate_square_subsequent_mask as generate_square_subsequent_mask,
    transformer_encoder_apply as transformer_encoder_apply,
    transformer_encoder_layer_apply as transformer_encoder_layer_apply,
)
from ._transformer_decoder import (
    TransformerDecoder as TransformerDecoder,
    TransformerDecoderLayer as TransformerDecoderLayer,
    transformer_decoder_apply as transformer_decoder_apply,
    transformer_decoder_layer_apply as transformer_decoder_layer_apply,
)
from ._transformer_model import Transformer as Transformer, transformer_apply as transformer_apply
from ._upsample import Upsample as Upsample, upsample_apply as upsample_apply
