"""Schemas and shape specs behind `hax.validate`.

- Structural rules of a node and of a global config: pydantic schemas
  (`NodeSchema`, `NODE_ADAPTER`, `CONFIG_ADAPTER`). An exact pre-check proves most
  nodes valid without running the schemas, which decide (and word) everything else.
- Shape rules: a layer declares its params and buffers with jaxtyping annotations
  in a `LayerSpec` (`layer_spec(...)`) attached to its apply (`register_spec`, or
  `hax.nn.layer`, which declares the rest of the layer with it).
"""

from .._types import AuxValue as AuxValue
from ._errors import Problem as Problem, ValidationError as ValidationError
from ._node import (
    CONFIG_ADAPTER as CONFIG_ADAPTER,
    NODE_ADAPTER as NODE_ADAPTER,
    NodeSchema as NodeSchema,
)
from ._spec import (
    STANDARD_CONFIG as STANDARD_CONFIG,
    ArraySpec as ArraySpec,
    Dim as Dim,
    LayerSpec as LayerSpec,
    array_spec as array_spec,
    config_of as config_of,
    layer_spec as layer_spec,
    reads_config as reads_config,
    register_spec as register_spec,
    spec_of as spec_of,
)
from ._values import PYTREE_DEPTH_LIMIT as PYTREE_DEPTH_LIMIT
