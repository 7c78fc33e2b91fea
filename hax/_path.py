"""Node paths: tuples of submodule names and their `"a/b/c"` string form."""

from ._types import Path


def as_path(path: Path) -> tuple[str, ...]:
    """Normalise a path given as a tuple or as `"a/b/c"` to a tuple of names.

    `""`, `"/"` and `()` all name the root.
    """
    if isinstance(path, str):
        stripped = path.strip("/")
        if not stripped:
            return ()
        names = tuple(stripped.split("/"))
    elif isinstance(path, tuple):
        names = path
    else:
        raise TypeError(
            f"a path must be a tuple of names or a string 'a/b/c', found {type(path).__name__}"
        )
    for name in names:
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(
                f"invalid path {path!r}: every name must be a non-empty string without '/', "
                f"found {name!r}"
            )
    return names


def path_str(path: Path) -> str:
    """The string form of a path: `("encoder", "0")` -> `"encoder/0"`; the root is `""`."""
    return "/".join(as_path(path))


def describe_path(path: tuple[str, ...]) -> str:
    """A path for error messages: the string form, or `<root>` for the root."""
    return "/".join(path) if path else "<root>"
