"""Python code written for one pytree structure: the hot path of `hax.jit`.

A structure tree is a pytree of many small dicts whose static leaves (`aux` values,
`apply` functions, the config) decide what is compiled. Flattening it generically
at every call costs several times what `jax.jit` spends on the flat state of the
same model. So once a structure has been seen twice, `hax.jit` writes two plain
Python functions for it, compiled with `compile()` as `dataclasses` does:

- a *matcher* `match(args, kwargs) -> (donated, kept) | None` that walks the
  arguments in straight-line code, collects the array leaves in jax's leaf order,
  and checks every static leaf (by identity first, then exactly, with `same`), every
  container type and every dict's key set. Any difference returns `None` and the
  call takes the generic path, so a match is exactly "same structure, same statics".
- a *builder* `build(arrays) -> result` that rebuilds a result of a known structure
  from the compiled function's arrays with dict and list displays.

The code is flat (one statement per container, variables reused by depth), so any
depth of tree compiles. Pytree nodes other than dicts, lists, tuples and None
(named tuples, registered classes) are flattened by jax inside the generated code.

Where HAX was installed with a C compiler, `hax._fastpath` (C) does both jobs instead,
following a *program* written here from the same structure (`program`): the same
checks, without running bytecode per node. The generated Python code is the fallback
for installs without a compiler; the fast-path tests run both.
"""

import functools
import operator
import types
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from ._static import Split, is_array, same, same_all

FORMAT = 3
"""The version of the program format (`program`) that `hax/_fastpath.c` reads."""

NATIVE: types.ModuleType | None
"""`hax._fastpath` where HAX was built with a C compiler, else None (Python code)."""
try:
    from . import _fastpath

    # A module compiled from other sources (an editable install not rebuilt) is not used.
    NATIVE = _fastpath if getattr(_fastpath, "FORMAT", None) == FORMAT else None
except ImportError:  # installed without a C compiler
    NATIVE = None

_flatten = jax.tree_util.default_registry.flatten

MAX_LEAVES = 100_000
"""Structures with more leaves than this are not compiled to code (the generic path
stays correct; compiling very long functions would cost more than it saves)."""


@functools.cache
def _array_types() -> frozenset[type]:
    """The exact types of the array leaves most calls hold (JAX arrays, JAX PRNG keys,
    NumPy arrays): a matcher checks its leaves' types against these in one C call, and
    checks any other type with `is_array`. Made when the first matcher is written (JAX
    is running by then), not at import."""
    return frozenset({type(jax.numpy.zeros(())), type(jax.random.key(0)), np.ndarray})


class Whole:
    """A whole argument named in `static_argnames`: one static leaf, compared by the
    value's own type and `==` (so it need not be a pytree of hashables)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Whole)
            and type(self.value) is type(other.value)
            and bool(self.value == other.value)
        )

    def __hash__(self) -> int:
        return hash(self.value)


def _is_leaf(treedef: Any) -> bool:
    return bool(treedef.num_nodes == 1 and treedef.num_leaves == 1)


class _Writer:
    """Collects the lines and the constants (globals) of one generated function."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"same": same, "E": {}}

    def const(self, value: Any, prefix: str = "c") -> str:
        name = f"{prefix}{len(self.names)}"
        self.names[name] = value
        return name

    def key(self, key: Any) -> str:
        return repr(key) if type(key) is str else self.const(key)

    def function(self, source: str, name: str) -> Callable[..., Any]:
        code = compile(source, f"<hax.jit {name}>", "exec")
        exec(code, self.names)  # the source is generated above from structure alone
        fn: Callable[..., Any] = self.names[name]
        fn.__hax_source__ = source  # type: ignore[attr-defined]  # for inspection
        return fn


class _Matcher(_Writer):
    """Writes a matcher. The walk is iterative (a stack of pending steps), so that the
    structure's depth is not bounded by Python's recursion limit."""

    def __init__(self, split: Split, donated: Sequence[bool]) -> None:
        super().__init__()
        self.is_array = split.is_array
        self.statics = split.statics.values
        self.donated = donated
        self.pos = 0  # the next leaf
        self.spos = 0  # the next static leaf
        self.indent = ""
        self.conds: list[str] = []
        self.todo: list[Callable[[], None]] = []

    def run(self) -> None:
        while self.todo:
            self.todo.pop()()

    def emit(self, line: str) -> None:
        self.lines.append(self.indent + line)

    def flush(self) -> None:
        """Emit the pending checks (before anything reassigns their variables)."""
        if self.conds:
            self.emit(f"if {' or '.join(self.conds)}: return None")
            self.conds.clear()

    def target(self, pos: int) -> str:
        return "D" if self.donated[pos] else "K"

    def leaf(self, var: str) -> None:
        pos = self.pos
        self.pos += 1
        if self.is_array[pos]:
            self.flush()
            self.emit(f"{self.target(pos)}.append({var})")
            return
        value = self.statics[self.spos]
        self.spos += 1
        if isinstance(value, Whole):  # a static argument: the call holds a Whole too
            raw, whole = self.const(value.value), self.const(value)
            self.conds.append(f"({var}.value is not {raw} and {var} != {whole})")
            return
        c = self.const(value)
        self.conds.append(f"({var} is not {c} and not same({var}, {c}))")

    def node(self, treedef: Any, var: str, depth: int) -> None:
        if _is_leaf(treedef):
            self.leaf(var)
            return
        kind, data = treedef.node_data()
        children = treedef.children()
        if kind is type(None):
            self.conds.append(f"{var} is not None")
        elif kind is dict:
            self.dict_node(list(data), children, var, depth)
        elif kind is list or kind is tuple:
            n = len(children)
            self.conds.append(f"type({var}) is not {kind.__name__} or len({var}) != {n}")
            self.unpack(var, children, depth)
        else:
            self.opaque(treedef, var)

    def dict_node(self, keys: list[Any], children: list[Any], var: str, depth: int) -> None:
        if not keys:
            self.conds.append(f"type({var}) is not dict or {var}")
            return
        self.conds.append(f"type({var}) is not dict or len({var}) != {len(keys)}")
        start = self.pos
        if all(map(_is_leaf, children)) and all(
            self.is_array[start + i] and self.donated[start + i] == self.donated[start]
            for i in range(len(children))
        ):  # a dict of arrays (params, buffers): one C call collects them
            self.flush()
            getter = self.const(operator.itemgetter(*keys), "g")
            target = self.target(start)
            if len(keys) > 1:
                self.emit(f"{target} += {getter}({var})")
            else:
                self.emit(f"{target}.append({getter}({var}))")
            self.pos += len(keys)
            return
        if len(keys) == 1:
            self.flush()
            name = f"r{depth}_0"
            self.emit(f"{name} = {var}[{self.key(keys[0])}]")
            self.todo.append(lambda: self.node(children[0], name, depth + 1))
            return
        self.unpack(f"{self.const(operator.itemgetter(*keys), 'g')}({var})", children, depth)

    def unpack(self, source: str, children: list[Any], depth: int) -> None:
        if not children:
            return
        self.flush()
        if self.alike(children):  # a stack of equal layers: one loop, hot in cache
            name = f"r{depth}_x"
            self.emit(f"for {name} in {source}:")
            outer, start, sstart = self.indent, self.pos, self.spos
            self.indent += "    "

            def end_loop() -> None:
                self.flush()
                self.indent = outer
                self.pos = start + len(children) * (self.pos - start)
                self.spos = sstart + len(children) * (self.spos - sstart)

            self.todo.append(end_loop)
            self.todo.append(lambda: self.node(children[0], name, depth + 1))
            return
        names = [f"r{depth}_{i}" for i in range(len(children))]
        comma = "," if len(names) == 1 else ""
        self.emit(f"{', '.join(names)}{comma} = {source}")
        for name, child in reversed(list(zip(names, children, strict=True))):
            self.todo.append(functools.partial(self.node, child, name, depth + 1))

    def alike(self, children: list[Any]) -> bool:
        """Whether several children (from the current leaf on) have one structure, the
        same array positions and donation, and the same static leaves."""
        first = children[0]
        if len(children) < 4 or any(c != first for c in children[1:]):
            return False
        n = first.num_leaves
        mask = self.is_array[self.pos : self.pos + n]
        donated = tuple(self.donated[self.pos : self.pos + n])
        s = n - sum(mask)
        statics = self.statics[self.spos : self.spos + s]
        for i in range(1, len(children)):
            at = self.pos + i * n
            if self.is_array[at : at + n] != mask or tuple(self.donated[at : at + n]) != donated:
                return False
            if not same_all(self.statics[self.spos + i * s : self.spos + (i + 1) * s], statics):
                return False
        return True

    def opaque(self, treedef: Any, var: str) -> None:
        """A registered pytree node jax must flatten: compare its whole structure."""
        self.flush()
        td = self.const(treedef, "t")
        self.emit(f"o_l, o_t = FLATTEN({var}, None)")
        self.emit(f"if o_t != {td}: return None")
        self.names["FLATTEN"] = _flatten
        for i in range(treedef.num_leaves):
            self.leaf(f"o_l[{i}]")
        self.flush()


def _preorder(treedef: Any) -> list[tuple[Any, list[int]]]:
    """The nodes of `treedef` in jax's (depth-first) order, each with the indices of its
    children, listed without recursion. Dicts, lists and tuples are opened; any other
    node (None, a registered class) is listed whole, with its leaves."""
    nodes: list[tuple[Any, list[int]]] = []
    stack: list[tuple[Any, list[int] | None]] = [(treedef, None)]
    while stack:
        td, parent = stack.pop()
        if parent is not None:
            parent.append(len(nodes))
        kids: list[int] = []
        nodes.append((td, kids))
        if not _is_leaf(td) and td.node_data()[0] in (dict, list, tuple):
            stack.extend((c, kids) for c in reversed(td.children()))
    return nodes


# The operations of a program (as `hax/_fastpath.c` numbers them).
_DICT, _LIST, _TUPLE, _NONE, _STATIC, _WHOLE, _ARRAY, _OPAQUE = range(8)


def program(
    treedef: Any,
    is_array: Sequence[bool],
    statics: Sequence[Any],
    slots: Sequence[int] | None = None,
) -> tuple[Any, ...]:
    """The program of one pytree structure for `hax._fastpath`: a tuple per node,
    `(op, ...)`, children in jax's leaf order; static leaves carry their value.

    For `match`, array leaf `i` (counting arrays only) is `(ARRAY, slots[i])`, the list
    it goes to. For `build` (`slots` None), an array leaf is `(ARRAY, 0)`, the next output,
    and a dict node also carries a template dict (its static children's values) and
    which children to fill in. Equal subprograms are one object (a stack of equal
    layers is one layer's program), so the program stays small and in cache as the
    walk reads it. Written without recursion, children before parents."""
    build = slots is None
    nodes = _preorder(treedef)
    leaf_iter = iter(is_array)
    array_slots, static_values = iter(slots or ()), iter(statics)
    # Interned programs, keyed by op, data and the identities of their parts (so that
    # only the same static objects are shared: `1`, `True` and `1.0` stay apart).
    seen: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def intern(prog: tuple[Any, ...], key: tuple[Any, ...]) -> tuple[Any, ...]:
        return seen.setdefault(key, prog)

    def leaf() -> tuple[Any, ...]:
        if next(leaf_iter):
            slot = 0 if build else next(array_slots)
            return intern((_ARRAY, slot), (_ARRAY, slot))
        value = next(static_values)
        if isinstance(value, Whole):
            return (_WHOLE, value.value, value)
        return intern((_STATIC, value), (_STATIC, id(value)))

    # Leaves in pre-order (the order of `nodes`) are jax's leaf order.
    leaf_progs: dict[int, tuple[Any, ...]] = {}
    for i, (td, _) in enumerate(nodes):
        if _is_leaf(td):
            leaf_progs[i] = leaf()
        elif td.node_data()[0] not in (dict, list, tuple, type(None)):
            leaf_progs[i] = (_OPAQUE, td, tuple(leaf() for _ in range(td.num_leaves)))
    progs: list[tuple[Any, ...]] = [()] * len(nodes)
    for i in reversed(range(len(nodes))):
        td, kids = nodes[i]
        if i in leaf_progs:
            progs[i] = leaf_progs[i]
            continue
        kind, data = td.node_data()
        children = tuple(progs[k] for k in kids)
        key = (kind, tuple(data) if kind is dict else None, *map(id, children))
        if key in seen:
            progs[i] = seen[key]
        elif kind is dict and build:
            pairs = zip(data, children, strict=True)
            template = {k: c[1] if c[0] == _STATIC else None for k, c in pairs}
            rest = tuple(j for j, c in enumerate(children) if c[0] != _STATIC)
            progs[i] = intern((_DICT, tuple(data), children, template, rest), key)
        elif kind is dict:
            progs[i] = intern((_DICT, tuple(data), children), key)
        elif kind is list or kind is tuple:
            progs[i] = intern((_LIST if kind is list else _TUPLE, children), key)
        else:
            progs[i] = (_NONE,)
    return progs[0]


def _native_matcher(split: Split, donated: Sequence[bool]) -> Callable[..., Any]:
    """`hax._fastpath.match` bound to the program of `split` (args and kwargs apart)."""
    assert NATIVE is not None
    slots = [int(not d) for d, a in zip(donated, split.is_array, strict=True) if a]
    prog = program(split.treedef, split.is_array, split.statics.values, slots)
    args_prog, kwargs_prog = prog[1]
    sizes = (slots.count(0), slots.count(1))  # arrays for each list: presized
    context = (tuple(_array_types()), is_array, same, _flatten, "value", *sizes)
    return functools.partial(NATIVE.match, args_prog, kwargs_prog, context)


def matcher(split: Split, donated: Sequence[bool]) -> Callable[..., Any]:
    """The matcher of the `(args, kwargs)` structure `split` (see the module docstring):
    `hax._fastpath`'s where it is built, else generated Python code.

    `donated[i]` says whether leaf `i` belongs to a donated argument."""
    if NATIVE is not None:
        return _native_matcher(split, donated)
    return python_matcher(split, donated)


def python_matcher(split: Split, donated: Sequence[bool]) -> Callable[..., Any]:
    """The matcher of `split` as generated Python code."""
    w = _Matcher(split, donated)
    args_td, kwargs_td = split.treedef.children()
    kw_keys = list(kwargs_td.node_data()[1])
    w.conds.append(f"len(args) != {len(args_td.children())}")
    w.conds.append(f"len(kwargs) != {len(kw_keys)}")
    w.flush()
    # Every argument in a variable, with where its leaves start...
    tops: list[tuple[str, Any, int, int]] = []
    pos = spos = 0
    children = [*args_td.children(), *kwargs_td.children()]
    names = [f"a{i}" for i in range(len(children))]
    for name, child in zip(names, children, strict=True):
        tops.append((name, child, pos, spos))
        arrays = sum(split.is_array[pos : pos + child.num_leaves])
        pos, spos = pos + child.num_leaves, spos + child.num_leaves - arrays
    n_args = len(args_td.children())
    if n_args:
        w.emit(f"{', '.join(names[:n_args])}{',' if n_args == 1 else ''} = args")
    for name, key in zip(names[n_args:], kw_keys, strict=True):
        w.emit(f"{name} = kwargs[{w.key(key)}]")

    # ...then the arguments without arrays (a config, a flag: quick to reject a call
    # made with other static values), then the rest in order.
    def has_arrays(top: tuple[str, Any, int, int]) -> bool:
        _, child, start, _ = top
        return any(split.is_array[start : start + child.num_leaves])

    static_first = sorted(tops, key=has_arrays)
    for name, child, start, sstart in static_first:
        w.pos, w.spos = start, sstart
        w.node(child, name, 1)
        w.run()
        w.flush()
    body = "\n".join(f"        {line}" for line in w.lines)
    source = (
        "def match(args, kwargs):\n"
        "    D = []\n"
        "    K = []\n"
        "    try:\n"
        f"{body or '        pass'}\n"
        "    except Exception:  # any difference in structure: not this entry\n"
        "        return None\n"
        "    if not (ARRAYS.issuperset(map(type, K)) and ARRAYS.issuperset(map(type, D))):\n"
        "        if not (all(map(is_array, K)) and all(map(is_array, D))):\n"
        "            return None  # a static value where the entry has an array\n"
        "    return D, K\n"
    )
    w.names["ARRAYS"] = _array_types()
    w.names["is_array"] = is_array
    return w.function(source, "match")


def builder(split: Split) -> Callable[[tuple[Any, ...]], Any]:
    """`build(arrays)`: the object of structure `split` holding `arrays` (the results
    of a compiled function, in leaf order) and `split`'s static leaves:
    `hax._fastpath`'s where it is built, else generated Python code."""
    if NATIVE is not None:
        prog = program(split.treedef, split.is_array, split.statics.values)
        return functools.partial(NATIVE.build, prog)
    return python_builder(split)


def python_builder(split: Split) -> Callable[[tuple[Any, ...]], Any]:
    """The builder of `split` as generated Python code.

    The nodes are listed in jax's (depth-first) order without recursion, then written
    children first, one container per line."""
    w = _Writer()
    nodes = _preorder(split.treedef)
    # Leaves in jax's order: the order in which the walk above met them (opaque
    # registered nodes hold their leaves themselves).
    exprs: list[str] = [""] * len(nodes)
    statics = iter(split.statics.values)
    array_i = 0
    leaf_exprs: dict[int, list[str]] = {}
    pos = 0
    for i, (treedef, _) in enumerate(nodes):
        if _is_leaf(treedef) or treedef.node_data()[0] not in (dict, list, tuple):
            out = []
            for _ in range(treedef.num_leaves):
                if split.is_array[pos]:
                    out.append(f"o[{array_i}]")
                    array_i += 1
                else:
                    out.append(w.const(next(statics)))
                pos += 1
            leaf_exprs[i] = out
    for i in reversed(range(len(nodes))):
        treedef, kids = nodes[i]
        if _is_leaf(treedef):
            exprs[i] = leaf_exprs[i][0]
            continue
        kind, data = treedef.node_data()
        parts = [exprs[k] for k in kids]
        if kind is type(None):
            exprs[i] = "None"
            continue
        if kind is dict:
            expr = (
                "{" + ", ".join(f"{w.key(k)}: {p}" for k, p in zip(data, parts, strict=True)) + "}"
            )
        elif kind is list:
            expr = "[" + ", ".join(parts) + "]"
        elif kind is tuple:
            expr = "(" + "".join(f"{p}, " for p in parts) + ")"
        else:
            expr = f"{w.const(treedef, 't')}.unflatten([{', '.join(leaf_exprs[i])}])"
        w.lines.append(f"v{i} = {expr}")
        exprs[i] = f"v{i}"
    body = "".join(f"    {line}\n" for line in w.lines)
    return w.function(f"def build(o):\n{body}    return {exprs[0]}\n", "build")
