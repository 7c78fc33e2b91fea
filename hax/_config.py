"""Global configs: merging the configs of composed modules."""

from collections.abc import Sequence
from typing import Any

from ._static import static_key
from ._types import GlobalConfig


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types, all the way down (`1`, `1.0` and `True` differ)."""
    return bool(static_key(a) == static_key(b))


def merge_configs(*configs: GlobalConfig, names: Sequence[str] | None = None) -> GlobalConfig:
    """Merge the global configs of modules being composed into one.

    A key set by several configs must have the same value (and type) in each;
    otherwise `ValueError` names the key and both values, and with `names` (one per
    config, e.g. `"submodule 'encoder'"`) which two modules disagree. Inputs are not
    mutated.
    """
    merged: GlobalConfig = {}
    sources: dict[str, str] = {}
    for i, config in enumerate(configs):
        if not isinstance(config, dict):
            raise TypeError(
                f"merge_configs: config {i} is a {type(config).__name__}, not a dict; pass "
                "the configs of the modules being combined (`{}` for a module without one)"
            )
        merge_into(merged, sources, config, names[i] if names is not None else None)
    return merged


def merge_into(
    merged: GlobalConfig, sources: dict[str, str], config: GlobalConfig, name: str | None
) -> None:
    """Add `config` (from the module called `name`) to `merged` in place; `sources`
    records which module set each key, for the message of a conflict."""
    for key, value in config.items():  # check every key before changing anything
        if key in merged and not _same(merged[key], value):
            who = f" ({sources.get(key, 'one module')} vs {name})" if name is not None else ""
            raise ValueError(
                f"global config conflict on key {key!r}: {merged[key]!r} vs {value!r}{who}. "
                "The modules being combined were built expecting different values; build "
                "them with the same value, or set it once on the combined module."
            )
    merged.update(config)
    if name is not None:
        for key in config:
            sources.setdefault(key, name)
