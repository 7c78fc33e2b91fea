"""Checkpoints: save and load params and buffers as safetensors, without pickle.

`save(path, module)` writes every param and buffer bit-exactly (bfloat16 and typed
PRNG keys included) with the aux values, node paths and global config as JSON
metadata, atomically. `load(path, like=module)` reads the arrays back into a model
you built, checking every leaf name, shape and dtype; `load(path)` returns the bound
state. Loading reads data only: nothing named in the file is imported or run.
"""

from .._report import TransferEntry as TransferEntry, TransferReport as TransferReport
from ._format import (
    CheckpointFormatError as CheckpointFormatError,
    LeafInfo as LeafInfo,
    NodeInfo as NodeInfo,
)
from ._load import (
    CheckpointInfo as CheckpointInfo,
    CheckpointMismatchError as CheckpointMismatchError,
    load as load,
    read_info as read_info,
)
from ._save import save as save
