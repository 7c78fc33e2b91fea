"""hax.jit's matcher and builder in C (`hax/_fastpath.c`); see `hax._pytree_code`."""

from typing import Any

FORMAT: int

def match(
    args_program: tuple[Any, ...],
    kwargs_program: tuple[Any, ...],
    context: tuple[Any, ...],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[list[Any], list[Any]] | None: ...
def build(program: tuple[Any, ...], outputs: tuple[Any, ...]) -> Any: ...
