"""`ValidationError`: every problem found in a tree, each with its path and key."""

from dataclasses import dataclass
from typing import Any, NamedTuple


def a(noun: str) -> str:
    """`noun` with its indefinite article: `a("int")` is `"an int"`."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def describe(value: Any) -> str:
    """What `value` is, for messages: its type, never its contents (`"a list"`, `"None"`).
    NumPy types are named as such: a `numpy.bool` is not the `bool` a message asks for."""
    if value is None:
        return "None"
    kind = type(value)
    name = getattr(kind, "__name__", "object")
    return a(f"numpy.{name}" if getattr(kind, "__module__", None) == "numpy" else name)


def safe_str(value: Any) -> str:
    """`str(value)`, or its type in angle brackets where its `__str__` raises."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def safe_repr(value: Any) -> str:
    """`repr(value)`, or its type in angle brackets where its `__repr__` raises."""
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__}>"


class Issue(NamedTuple):
    """One problem inside one node, before the walk adds the node's path:
    `Problem(path, *issue)`."""

    key: str
    found: str
    expected: str
    hint: str = ""


@dataclass(frozen=True)
class Problem:
    """One problem: where (`path` of the node, `key` within it), what was found and
    what was expected. `path` is `"encoder/0"` (`""` for the root); `key` is e.g.
    `"params.bias"`, `"aux.out_features"`, `"apply"` or `"global_config.train_mode"`.
    """

    path: str
    key: str
    found: str
    expected: str
    hint: str = ""

    def __str__(self) -> str:
        where = self.path or "<root>"
        text = f"{where}: {self.key}: expected {self.expected}, found {self.found}"
        return f"{text} — {self.hint}" if self.hint else text


class ValidationError(ValueError):
    """A structure tree or global config broke the rules; `errors` lists every problem.

    `str(err)` reads as a list, one problem a line, each naming the node path and key.
    """

    def __init__(self, errors: list[Problem]) -> None:
        self.errors: list[Problem] = list(errors)
        super().__init__(self._message())

    def _message(self) -> str:
        n = len(self.errors)
        head = f"{n} problem{'s' if n != 1 else ''} found by hax.validate:"
        return "\n".join([head, *(f"  {p}" for p in self.errors)])
