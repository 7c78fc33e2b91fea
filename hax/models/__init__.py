"""Ready-made models built from `hax.nn` layers, with the parameter names of their
usual PyTorch implementations.

- `ResNet`, `resnet18`, `BasicBlock`: torchvision's ResNet; `resnet18().state_dict()`
  maps one to one onto the tree (`"layer1.0.conv1.weight"` is
  `layer1/0/conv1/params/weight`). `small_input=True` gives a stem for small images.
- `GPT`, `Block`, `CausalSelfAttention`, `MLP`: a GPT-2-style decoder with nanoGPT's
  names and init; `generate` samples from it under `jit`.

Each constructor returns a validated module `(tree, config)`. The apply functions
read the architecture from the submodules, so they also run trees with the same
submodule names built elsewhere (for example converted from PyTorch).
"""

from ._gpt import (
    GPT as GPT,
    MLP as MLP,
    Block as Block,
    CausalSelfAttention as CausalSelfAttention,
    block_apply as block_apply,
    causal_self_attention_apply as causal_self_attention_apply,
    generate as generate,
    gpt_apply as gpt_apply,
    mlp_apply as mlp_apply,
)
from ._resnet import (
    BasicBlock as BasicBlock,
    ResNet as ResNet,
    basic_block_apply as basic_block_apply,
    resnet18 as resnet18,
    resnet_apply as resnet_apply,
)
