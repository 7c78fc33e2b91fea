"""PyTorch interop: load a torch model's weights into a HAX tree, or convert the model.

- `from_torch(module_or_state_dict, like)` fills a copy of the HAX tree `like` from a
  torch `state_dict`: the key `"layer1.0.conv1.weight"` fills the leaf
  `layer1/0/conv1/params/weight` (or `.../buffers/...`). Shapes must match exactly
  (`hax.nn` uses PyTorch's layouts); values are copied and cast to `like`'s dtypes.
  Every mismatch is reported in one `StateDictMismatchError`.
- `convert(torch_module, applies=...)` builds the module `(tree, config)` of a torch
  model: each `torch.nn` layer with a `hax.nn` counterpart is rebuilt with the same
  arguments, your own classes get the apply you give in `applies`, and the weights
  are loaded with `from_torch`. `register_converter` and `register_apply` teach it
  more classes, by class or by dotted class path.
- `to_torch(tree)` is the way back: the torch `state_dict` of a HAX tree, for
  `torch_module.load_state_dict(...)`.

PyTorch is optional: it is imported only when these functions are called.
"""

from ..nn._layer import ConvertChild as ConvertChild, Converter as Converter
from ..nn._sequential import named_sequential_apply as named_sequential_apply
from . import _families as _families
from ._convert import ConversionError as ConversionError, convert as convert
from ._from_torch import (
    Mismatch as Mismatch,
    StateDictMismatchError as StateDictMismatchError,
    from_torch as from_torch,
)
from ._library import register_apply as register_apply, register_converter as register_converter
from ._to_torch import to_torch as to_torch
