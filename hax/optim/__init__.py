"""Training glue to optax: gradients with respect to params only, and a train step.

A model state is either a structure tree (use `hax.jit`) or the flat state of
`hax.bind_module` (use `jax.jit`); both split into params and the rest the same way.
"""

from ._grad import (
    merge_params as merge_params,
    split_params as split_params,
    value_and_grad as value_and_grad,
)
from ._loss_scale import (
    DynamicLossScaleState as DynamicLossScaleState,
    all_finite as all_finite,
    dynamic_loss_scale as dynamic_loss_scale,
)
from ._step import params_of as params_of, train_step as train_step
