"""`transfer`: copy weights between two architectures by leaf name, shape and dtype."""

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from .._module import as_module, bind_module
from .._report import TransferReport, leaf_spec, match_leaves, replace_state_leaves, state_leaves
from .._types import Module, StructureTree

Rename: TypeAlias = Mapping[str, str | None] | Callable[[str], str | None]
"""Source leaf names -> destination leaf names: a mapping of path prefixes (or whole
leaf names) to their replacements, or a function on leaf names. `None` drops a leaf."""


def transfer(
    src: Module | StructureTree,
    dst: Module | StructureTree,
    rename: Rename | None = None,
) -> tuple[StructureTree, TransferReport]:
    """Copy every param and buffer of `src` into `dst` where the leaf name (after
    `rename`), shape and dtype all match. Leaves are named as in `hax.named_leaves`
    (`"5/params/weight"`; the leaves of a pytree-valued param add their keys,
    `"5/params/w/0"`).

    Copies are bit-exact (the arrays are shared; JAX arrays are immutable). Neither
    input is modified; the result shares every leaf it did not replace with `dst`.

    **Arguments:**
    - `src`, `dst`: structure trees or modules `(tree, config)`.
    - `rename`: maps source leaf names to destination names before matching:
        - a mapping `{old: new}` whose keys are node paths or leaf names; the longest
          key that is `name` or a prefix of it followed by `/` applies, e.g.
          `{"fc1": "0", "fc2": "2"}` maps `"fc1/params/weight"` to `"0/params/weight"`.
          A value `None` drops the matching leaves, `""` strips the prefix. A key that
          matches no source leaf raises `ValueError` (a typo would skip silently).
        - a function `name -> new name | None` called on every source leaf name.

    **Returns:** `(new_dst_tree, report)`; `report` is a `TransferReport` listing the
    leaves `copied`, `missing` (in `dst` only), `unused` (in `src` only, or dropped)
    and `mismatched` (same name, other shape or dtype); print it for a table.

    **Example:**
    ```python
    wide, report = transfer(small_mlp, hax.nn.Sequential(...), rename={"fc1": "0"})
    print(report)
    ```
    """
    src_state, _ = bind_module(_as_tree(src, "src"), {})
    dst_state, dst_apply = bind_module(_as_tree(dst, "dst"), {})
    src_leaves = state_leaves(src_state, "transfer: src")
    dst_specs = {
        name: leaf_spec(x, f"transfer: dst: {name}")
        for name, x in state_leaves(dst_state, "transfer: dst")
    }
    src_specs = [(name, leaf_spec(x, f"transfer: src: {name}")) for name, x in src_leaves]
    targets = _rename([name for name, _ in src_specs], rename)
    report = match_leaves(
        ((name, target, spec) for (name, spec), target in zip(src_specs, targets, strict=True)),
        dst_specs,
    )
    by_name = dict(src_leaves)
    copies = {e.path: by_name[e.src_path or e.path] for e in report.copied}
    return dst_apply.tree(replace_state_leaves(dst_state, copies)), report


def _as_tree(value: Any, who: str) -> StructureTree:
    module = as_module(value)
    if module is None:
        raise TypeError(
            f"transfer: expected {who} to be a structure tree or a module `(tree, config)` "
            f"such as `hax.nn.Linear(4, 2)`, found {type(value).__name__}"
        )
    return module[0]


def _rename(names: list[str], rename: Rename | None) -> list[str | None]:
    if rename is None:
        return list(names)
    if callable(rename):
        out: list[str | None] = []
        for name in names:
            new = rename(name)
            if new is not None and (not isinstance(new, str) or not new):
                raise TypeError(
                    f"transfer: rename({name!r}) returned {new!r}; it must return a leaf name "
                    "(a non-empty str) or None to drop the leaf"
                )
            out.append(new)
        return out
    keys = {key.strip("/"): new for key, new in rename.items()}
    used: set[str] = set()
    out = []
    for name in names:
        match = max(
            (k for k in keys if k and (name == k or name.startswith(k + "/"))),
            key=len,
            default=None,
        )
        if match is None:
            out.append(name)
            continue
        used.add(match)
        new = keys[match]
        if new is None:
            out.append(None)
        else:
            rest = name[len(match) :]
            out.append((new.strip("/") + rest).strip("/"))
    unmatched = [k for k in keys if k not in used]
    if unmatched:
        raise ValueError(
            f"transfer: rename keys {unmatched} match no leaf of src; keys are node paths "
            f"or leaf names such as {names[:3]}"
        )
    return out
