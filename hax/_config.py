"""Global configs: merging the configs of composed modules."""

from typing import Any

from ._static import static_key
from ._types import GlobalConfig


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types, all the way down (`1`, `1.0` and `True` differ)."""
    return bool(static_key(a) == static_key(b))


def merge_configs(*configs: GlobalConfig) -> GlobalConfig:
    """Merge the global configs of modules being composed into one.

    A key set by several configs must have the same value (and type) in each;
    otherwise `ValueError` names the key and both values. Inputs are not mutated.
    """
    merged: GlobalConfig = {}
    for config in configs:
        for key, value in config.items():
            if key in merged and not _same(merged[key], value):
                raise ValueError(
                    f"global config conflict on key {key!r}: {merged[key]!r} vs {value!r}. "
                    "The modules being combined were built expecting different values; "
                    "build them with the same value, or set it once on the combined module."
                )
            merged[key] = value
    return merged
