"""Checkpoints: load into a tree, a module or a bound state, strict or not."""

import hax

module = hax.nn.Linear(2, 2, rng=0)
tree, config = module
hax.checkpoint.save("model.safetensors", module)
loaded, cfg = hax.checkpoint.load("model.safetensors", like=tree)
loaded["params"]["weight"].shape
loaded, cfg = hax.checkpoint.load("model.safetensors", like=module)
loaded, cfg, report = hax.checkpoint.load("model.safetensors", like=module, strict=False)
print(report.missing)
state, cfg = hax.checkpoint.load("model.safetensors")


def load_any(flag: bool) -> hax.StructureTree:
    result = hax.checkpoint.load("model.safetensors", like=tree, strict=flag)
    return result[0]


def load_module(flag: bool) -> hax.StructureTree:
    result = hax.checkpoint.load("model.safetensors", like=module, strict=flag)
    return result[0]
