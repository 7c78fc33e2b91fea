"""Multi-device placement of structure trees through JAX's own sharding.

Rules map the named dimensions of the layers' shape specs (`out_features`,
`in_features`, `num_embeddings`, `embed_dim`, `3*embed_dim`, ...) to mesh axes, so a
layer's shape annotations double as its partitioning annotations; `overrides` refine
them per node with any `hax.surgery` selector. `shardings(...)` gives one
`NamedSharding` per param and buffer, keyed like `hax.bind_module`'s state, for
`place`, `jax.device_put` or `jax.jit`; `init` builds a model directly in its shards.
Recipes: `replicated` + `batch_sharding` (data parallel), `fsdp`, `tensor_parallel`
(Megatron-style), and their combination on a 2-D mesh.
"""

from ._place import init as init, place as place
from ._recipes import (
    batch_sharding as batch_sharding,
    fsdp as fsdp,
    replicated as replicated,
    tensor_parallel as tensor_parallel,
)
from ._rules import (
    Axis as Axis,
    Overrides as Overrides,
    Rules as Rules,
    ShardingError as ShardingError,
    named as named,
    partition_specs as partition_specs,
    shardings as shardings,
)
