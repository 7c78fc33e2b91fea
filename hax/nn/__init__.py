"""PyTorch-named layers. Each constructor returns a module `(tree, global_config)`."""

from ._dropout import Dropout as Dropout
from ._dropout import dropout_apply as dropout_apply
from ._linear import Linear as Linear
from ._linear import linear_apply as linear_apply
from ._sequential import Sequential as Sequential
from ._sequential import sequential_apply as sequential_apply
