"""Meta-learning: differentiate a validation loss through training with respect to
hyperparameters, and adapt a learning rate online by hypergradient descent."""

from ._hd import (
    HypergradientSGDState as HypergradientSGDState,
    hypergradient_sgd as hypergradient_sgd,
)
from ._unroll import (
    hypergradient as hypergradient,
    layer_rates as layer_rates,
    sgd_step as sgd_step,
    unroll as unroll,
)
