"""The types of HAX's data model: structure trees, global configs, apply functions."""

from typing import Any, Protocol, TypeAlias

from typing_extensions import TypedDict

PyTree: TypeAlias = Any
"""A JAX pytree (nested dicts, lists and tuples) whose leaves are arrays."""

AuxValue: TypeAlias = bool | int | float | str | tuple["AuxValue", ...] | None
"""A static, hashable, JSON-like value stored in a node's `aux`."""

GlobalConfig: TypeAlias = dict[str, Any]
"""A JSON object shared by a whole model, e.g. `{"train_mode": True}`.

Values are typed `Any` so that `config["train_mode"]` is convenient to use; the
JSON rule (bool/int/float/str/None/list/dict values) is checked at runtime.
"""

Path: TypeAlias = str | tuple[str, ...]
"""A node path: a tuple of submodule names, or its string form `"a/b/c"`."""


class ApplyFn(Protocol):
    """`apply(tree, global_config, *args, **kwargs) -> (new_tree, output)`."""

    def __call__(
        self,
        tree: "StructureTree",
        global_config: GlobalConfig,
        /,
        *args: Any,
        **kwargs: Any,
    ) -> tuple["StructureTree", Any]: ...


class StructureTree(TypedDict):
    """A model as plain data. At runtime it is an ordinary `dict`.

    - `params`: trainable weights, name -> pytree of arrays.
    - `buffers`: non-trained state (running statistics, RNG keys, counters).
    - `aux`: static, hashable, JSON-like configuration of this node.
    - `apply`: the function that computes with this node.
    - `submodules`: child trees by name.
    """

    params: dict[str, PyTree]
    buffers: dict[str, PyTree]
    aux: dict[str, Any]
    apply: ApplyFn
    submodules: dict[str, "StructureTree"]


Module: TypeAlias = tuple[StructureTree, GlobalConfig]
"""What every `hax.nn` constructor returns: a tree and the config it expects."""

KINDS: tuple[str, ...] = ("params", "buffers", "aux", "apply", "submodules")
"""The five keys of every node, in canonical order."""

STATE_KINDS: tuple[str, str] = ("params", "buffers")
"""The kinds that hold arrays: what `bind_module` keeps as state."""
