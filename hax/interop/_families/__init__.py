"""The architecture knowledge `convert` carries for library model families.

Each module here registers applies (and converters) for the classes one library's
models are made of, by dotted class path, so nothing is imported until a model of
that library is converted. Importing this package registers them all.
"""

from . import (
    _hf_activations as _hf_activations,
    _timm_blocks as _timm_blocks,
    _timm_cnn as _timm_cnn,
    _timm_efficientnet as _timm_efficientnet,
    _timm_layers as _timm_layers,
    _torchvision_cnn as _torchvision_cnn,
    _torchvision_mobile as _torchvision_mobile,
)
