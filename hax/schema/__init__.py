"""Schemas and shape specs behind `hax.validate`.

- Structural rules of a node and of a global config: pydantic schemas
  (`NodeSchema`, `NODE_ADAPTER`, `CONFIG_ADAPTER`).
- Shape rules: a layer declares its params and buffers with jaxtyping annotations
  in a `LayerSpec` (`layer_spec(...)`) attached to its apply (`register_spec`).
"""

from ._errors import Problem as Problem
from ._errors import ValidationError as ValidationError
from ._node import (
    CONFIG_ADAPTER as CONFIG_ADAPTER,
)
from ._node import (
    NODE_ADAPTER as NODE_ADAPTER,
)
from ._node import (
    AuxValue as AuxValue,
)
from ._node import (
    NodeSchema as NodeSchema,
)
from ._spec import (
    ArraySpec as ArraySpec,
)
from ._spec import (
    Dim as Dim,
)
from ._spec import (
    LayerSpec as LayerSpec,
)
from ._spec import (
    array_spec as array_spec,
)
from ._spec import (
    layer_spec as layer_spec,
)
from ._spec import (
    register_spec as register_spec,
)
from ._spec import (
    spec_of as spec_of,
)
