"""Mixed precision: a `Policy` (param, compute and output dtypes) applied to a whole
tree, with normalisations and softmaxes kept in float32 and per-node overrides through
`aux["compute_dtype"]`. Dynamic loss scaling for float16 is
`hax.optim.dynamic_loss_scale`."""

from ._policy import (
    AUX_KEY as AUX_KEY,
    FLOAT32_APPLIES as FLOAT32_APPLIES,
    NodeDtype as NodeDtype,
    Policy as Policy,
    PolicyApply as PolicyApply,
    cast_floating as cast_floating,
    mixed_precision as mixed_precision,
)
