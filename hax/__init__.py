"""HAX: typed, schema-validated neural networks on JAX. Models are plain dicts."""

from . import nn as nn
from . import schema as schema
from ._config import merge_configs as merge_configs
from ._debug import debug as debug
from ._debug import debug_enabled as debug_enabled
from ._jit import JitFunction as JitFunction
from ._jit import jit as jit
from ._module import (
    BoundApply as BoundApply,
)
from ._module import (
    apply_tree as apply_tree,
)
from ._module import (
    bind_module as bind_module,
)
from ._module import (
    unbind_module as unbind_module,
)
from ._organizer import (
    StateOrganizer as StateOrganizer,
)
from ._organizer import (
    organized_apply as organized_apply,
)
from ._organizer import (
    organized_init as organized_init,
)
from ._path import as_path as as_path
from ._path import path_str as path_str
from ._rng import next_rng_key as next_rng_key
from ._rng import rng_context as rng_context
from ._tree import (
    empty_tree as empty_tree,
)
from ._tree import (
    fill_tree as fill_tree,
)
from ._tree import (
    filter_keys as filter_keys,
)
from ._tree import (
    get_subtree as get_subtree,
)
from ._tree import (
    is_structure_tree as is_structure_tree,
)
from ._tree import (
    merge_trees as merge_trees,
)
from ._tree import (
    missing_apply as missing_apply,
)
from ._tree import (
    named_leaves as named_leaves,
)
from ._tree import (
    named_nodes as named_nodes,
)
from ._tree import (
    set_subtree as set_subtree,
)
from ._tree import (
    split_tree as split_tree,
)
from ._tree import (
    structure_tree_map as structure_tree_map,
)
from ._types import (
    ApplyFn as ApplyFn,
)
from ._types import (
    AuxValue as AuxValue,
)
from ._types import (
    GlobalConfig as GlobalConfig,
)
from ._types import (
    Module as Module,
)
from ._types import (
    Path as Path,
)
from ._types import (
    PyTree as PyTree,
)
from ._types import (
    StructureTree as StructureTree,
)
from ._validate import validate as validate
from .schema import ValidationError as ValidationError

__version__ = "0.1.0"
