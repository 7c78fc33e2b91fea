"""The architecture knowledge `convert` carries for library model families.

Each module here registers applies (and converters) for the classes one library's
models are made of, by dotted class path, so nothing is imported until a model of
that library is converted. Importing this package registers them all.
"""

from . import (
    _bert as _bert,
    _distilbert as _distilbert,
    _gpt2 as _gpt2,
    _hf_activations as _hf_activations,
    _hf_vit as _hf_vit,
    _llama as _llama,
    _t5 as _t5,
    _timm_blocks as _timm_blocks,
    _timm_cnn as _timm_cnn,
    _timm_efficientnet as _timm_efficientnet,
    _timm_layers as _timm_layers,
    _timm_vit as _timm_vit,
    _torchvision_cnn as _torchvision_cnn,
    _torchvision_mobile as _torchvision_mobile,
    _torchvision_vit as _torchvision_vit,
)
