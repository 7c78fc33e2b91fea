"""`intermediates`: run a model and also return the outputs of chosen nodes."""

from typing import Any

from .._module import apply_tree
from .._path import path_str
from .._types import ApplyFn, GlobalConfig, StructureTree
from ._select import Selector, match
from ._wrap import Wrapped


class _Recorder:
    """Keeps every output of one node during one `intermediates` call."""

    __slots__ = ("outputs",)

    def __init__(self) -> None:
        self.outputs: list[Any] = []

    def __call__(
        self,
        inner: ApplyFn,
        tree: StructureTree,
        global_config: GlobalConfig,
        /,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[StructureTree, Any]:
        new_tree, out = inner(tree, global_config, *args, **kwargs)
        self.outputs.append(out)
        return new_tree, out


def intermediates(
    tree: StructureTree, global_config: GlobalConfig, paths: Selector, /, *args: Any, **kwargs: Any
) -> tuple[StructureTree, Any, dict[str, tuple[Any, ...]]]:
    """Run `tree` on `args`/`kwargs` and also return what the nodes at `paths` output.

    **Arguments:**
    - `tree`, `global_config`: the model.
    - `paths`: a path or any selector (`"blocks/*/attn"`, a list, `select(...)`).
    - `args`, `kwargs`: the model's inputs.

    **Returns:** `(new_tree, output, captured)`, where `new_tree` and `output` are
    what `hax.apply_tree` returns and `captured` maps each matched path's string
    (`"blocks/0/attn"`, `""` for the root) to a tuple of that node's outputs in call
    order: one entry per call, so a node called twice gives two, one never called
    gives `()`.

    The matched nodes run wrapped in a recorder for this call only, and the values
    come back as results of this function, so it works inside `hax.jit`, `jax.jit`
    (e.g. of a function of `hax.bind_module` state), `jax.grad` and `jax.vmap`: call
    it inside the transformed function. A node that runs inside a transformation
    the model applies itself (`jax.lax.scan`, `jax.checkpoint`, a nested `jit`)
    cannot be captured: its outputs exist only in that inner trace.

    **Example:**
    ```python
    _, logits, acts = hax.surgery.intermediates(tree, config, "features/3", x)
    (features,) = acts["features/3"]
    ```
    """
    targets = match(tree, paths, "hax.surgery.intermediates")
    recorders = {path: _Recorder() for path in targets}
    originals = {path: node["apply"] for path, node in zip(targets, targets.get(tree), strict=True)}

    def record(node: StructureTree, path: tuple[str, ...]) -> StructureTree:
        return {**node, "apply": Wrapped(recorders[path], node["apply"])}

    def restore(node: StructureTree, path: tuple[str, ...]) -> StructureTree:
        return {**node, "apply": originals[path]}

    # Every match records, a node inside another too.
    capturing = targets.set(tree, record, order="deepest_first")
    new_tree, out = apply_tree(capturing, global_config, *args, **kwargs)
    new_tree = targets.set(new_tree, restore, order="deepest_first")
    return new_tree, out, {path_str(p): tuple(recorders[p].outputs) for p in targets}
