"""Functional forms of the `hax.nn` layers and the losses, as `torch.nn.functional`.

Use as `from hax.nn import functional as F`. Everything here is a pure function of
arrays; `hax.nn._functional` lists where these differ from PyTorch, and each
function's docstring says what is particular to it.
"""

from ._functional import (
    bilinear as bilinear,
    cross_entropy as cross_entropy,
    dropout as dropout,
    dropout1d as dropout1d,
    dropout2d as dropout2d,
    elu as elu,
    gelu as gelu,
    hardsigmoid as hardsigmoid,
    hardswish as hardswish,
    leaky_relu as leaky_relu,
    linear as linear,
    log_softmax as log_softmax,
    mish as mish,
    mse_loss as mse_loss,
    nll_loss as nll_loss,
    prelu as prelu,
    relu as relu,
    relu6 as relu6,
    scaled_dot_product_attention as scaled_dot_product_attention,
    sigmoid as sigmoid,
    silu as silu,
    softmax as softmax,
    softplus as softplus,
    tanh as tanh,
)
from ._norm import layer_norm as layer_norm
from ._pool import adaptive_avg_pool2d as adaptive_avg_pool2d
from ._rotary import (
    apply_rotary_embedding as apply_rotary_embedding,
    rotary_embedding as rotary_embedding,
    rotate_half as rotate_half,
)
from ._upsample import interpolate as interpolate
