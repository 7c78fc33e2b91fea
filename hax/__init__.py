"""HAX: typed, schema-validated neural networks on JAX. Models are plain dicts."""

from . import (
    checkpoint as checkpoint,
    interop as interop,
    meta as meta,
    models as models,
    nn as nn,
    optim as optim,
    precision as precision,
    schema as schema,
    sharding as sharding,
    surgery as surgery,
)
from ._config import merge_configs as merge_configs
from ._debug import debug as debug, debug_enabled as debug_enabled
from ._jit import JitFunction as JitFunction, jit as jit
from ._leaves import LeafAddress as LeafAddress
from ._module import (
    BoundApply as BoundApply,
    apply_tree as apply_tree,
    bind_module as bind_module,
    unbind_module as unbind_module,
)
from ._organizer import (
    Child as Child,
    StateOrganizer as StateOrganizer,
    TypedOrganizer as TypedOrganizer,
    organized_apply as organized_apply,
    organized_init as organized_init,
)
from ._path import as_path as as_path, path_str as path_str
from ._rng import next_rng_key as next_rng_key, rng_context as rng_context
from ._summary import summary as summary
from ._tree import (
    empty_tree as empty_tree,
    fill_tree as fill_tree,
    filter_keys as filter_keys,
    get_subtree as get_subtree,
    is_structure_tree as is_structure_tree,
    merge_trees as merge_trees,
    missing_apply as missing_apply,
    named_leaves as named_leaves,
    named_nodes as named_nodes,
    set_subtree as set_subtree,
    split_tree as split_tree,
    structure_tree_map as structure_tree_map,
)
from ._types import (
    ApplyFn as ApplyFn,
    ArrayTree as ArrayTree,
    AuxValue as AuxValue,
    GlobalConfig as GlobalConfig,
    Kind as Kind,
    Module as Module,
    Path as Path,
    PyTree as PyTree,
    StateKind as StateKind,
    StructureTree as StructureTree,
)
from ._validate import validate as validate
from .schema import ValidationError as ValidationError
from .schema._spec import reads_config as reads_config

__version__ = "0.1.0"
