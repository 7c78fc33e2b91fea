"""`ResNet` and `BasicBlock`: torchvision's ResNet-18/34 layout and parameter names.

Every entry of torchvision's `resnet18().state_dict()` has a HAX leaf of the same
name and shape: `"layer1.0.conv1.weight"` is `layer1/0/conv1/params/weight`,
`"layer2.0.downsample.0.weight"` is `layer2/0/downsample/0/params/weight` and
`"bn1.running_mean"` is `bn1/buffers/running_mean`.

`basic_block_apply` and `resnet_apply` read the architecture from the submodules
alone (a block has a shortcut projection when it has a `downsample` submodule), so
they run any tree with these submodule names, including one converted from a
PyTorch model.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
from jaxtyping import Array, Float

from .. import nn
from .._organizer import StateOrganizer, organized_init
from .._rng import RngLike, next_rng_key, resolve_rng, rng_context
from .._tree import named_nodes, structure_tree_map
from .._types import GlobalConfig, InputArray, Module, StructureTree
from ..nn._init import full, normal_pieces
from ..nn._layer import layer


def reinit_normal(
    tree: StructureTree,
    rng: jax.Array,
    std_of: Callable[[tuple[str, ...], StructureTree], float | None],
) -> StructureTree:
    """Redraw `params["weight"]` of every node for which `std_of(path, node)` is not
    `None` from `N(0, std^2)`, and zero its `params["bias"]` if it has one: the
    re-initialisation pass of torchvision's ResNet and nanoGPT, after the layers were
    built with PyTorch's defaults. Shapes and dtypes are unchanged.

    All weights come from one random draw, cut into pieces (`hax.nn`'s initialisers:
    no compiled program per weight shape).
    """
    stds: dict[tuple[str, ...], float] = {}
    shapes = []
    for path, node in named_nodes(tree):
        std = std_of(path, node)
        if std is not None:
            stds[path] = std
            shapes.append(tuple(node["params"]["weight"].shape))
    if not stds:
        return tree
    draws = dict(zip(stds, normal_pieces(rng, shapes, list(stds.values())), strict=True))

    def redraw(node: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
        if path not in draws:
            return node
        params = dict(node["params"])
        weight = draws[path]
        dtype = params["weight"].dtype
        params["weight"] = weight if weight.dtype == dtype else weight.astype(dtype)
        if "bias" in params:
            params["bias"] = full(params["bias"].shape, 0.0, params["bias"].dtype)
        return {**node, "params": params}

    new_tree: StructureTree = structure_tree_map(redraw, tree)
    return new_tree


def _kaiming_fan_out(path: tuple[str, ...], node: StructureTree) -> float | None:
    """torchvision's `kaiming_normal_(mode="fan_out", nonlinearity="relu")` std for a
    `Conv2d`: `sqrt(2 / (out_channels * kH * kW))`."""
    if node["apply"] is not nn.conv2d_apply:
        return None
    shape = node["params"]["weight"].shape
    return math.sqrt(2.0 / (shape[0] * math.prod(shape[2:])))


# ---------------------------------------------------------------- BasicBlock


def basic_block_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    x: Float[InputArray, "batch channels height width"],
) -> tuple[StructureTree, Float[Array, "batch out_channels out_height out_width"]]:
    """`relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`; the shortcut is
    `downsample(x)` when the node has a `downsample` submodule, else `x`."""
    org = StateOrganizer(tree, global_config)
    out = org.relu(org.bn1(org.conv1(x)))
    out = org.bn2(org.conv2(out))
    identity = org.downsample(x) if "downsample" in tree["submodules"] else x
    return org.get_state(), org.relu(out + identity)


@organized_init(basic_block_apply)
def BasicBlock(
    org: StateOrganizer,
    inplanes: int,
    planes: int,
    stride: int = 1,
    downsample: Module | None = None,
    *,
    rng: RngLike | None = None,
) -> None:
    """The two-convolution residual block of ResNet-18/34, as torchvision's `BasicBlock`.

    Submodules `conv1` (3x3, stride `stride`), `bn1`, `relu`, `conv2` (3x3), `bn2` and,
    when given, `downsample` (usually `Sequential(Conv2d 1x1 stride s, BatchNorm2d)`,
    to give the shortcut the output's shape). Convolutions have no bias and PyTorch's
    default init, as in torchvision (its `ResNet` re-draws them; so does `ResNet`
    here). The config is `{"train_mode": True}`.

    **Arguments:**
    - `inplanes`, `planes`: input and output channels.
    - `stride`: the stride of `conv1` (2 halves the spatial size).
    - `downsample`: the shortcut module, needed when `stride != 1` or
      `inplanes != planes`.
    - `rng`: a PRNG key (or int seed); defaults to the next key of `hax.rng_context`.
    """
    if (stride != 1 or inplanes != planes) and downsample is None:
        raise ValueError(
            f"BasicBlock: with stride={stride}, inplanes={inplanes}, planes={planes} the "
            "shortcut does not match the output's shape; pass downsample="
            "Sequential(Conv2d(inplanes, planes, 1, stride, bias=False), BatchNorm2d(planes))"
        )
    with rng_context(resolve_rng(rng, "BasicBlock")):
        org.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        org.bn1 = nn.BatchNorm2d(planes)
        org.relu = nn.ReLU(inplace=True)
        org.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        org.bn2 = nn.BatchNorm2d(planes)
    if downsample is not None:
        org.downsample = downsample


layer("BasicBlock", basic_block_apply)


# ---------------------------------------------------------------- ResNet


def resnet_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    x: Float[InputArray, "batch in_channels height width"],
) -> tuple[StructureTree, Float[Array, "batch num_classes"]]:
    """The stem (`conv1`, `bn1`, `relu`, `maxpool`), `layer1`..`layer4`, global average
    pooling (`avgpool`), flatten, and the classifier `fc`: logits `(batch, num_classes)`."""
    org = StateOrganizer(tree, global_config)
    x = org.maxpool(org.relu(org.bn1(org.conv1(x))))
    x = org.layer4(org.layer3(org.layer2(org.layer1(x))))
    x = org.avgpool(x)
    return org.get_state(), org.fc(x.reshape(x.shape[0], -1))


def _make_layer(inplanes: int, planes: int, blocks: int, stride: int) -> Module:
    """torchvision's `ResNet._make_layer` for `BasicBlock`: a `Sequential` whose first
    block changes the shape (with a 1x1 `downsample` shortcut when needed). Keys come
    from the current `rng_context`."""
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
        )
    first = BasicBlock(inplanes, planes, stride, downsample)
    return nn.Sequential(first, *(BasicBlock(planes, planes) for _ in range(blocks - 1)))


def ResNet(
    layers: Sequence[int] = (2, 2, 2, 2),
    num_classes: int = 1000,
    in_channels: int = 3,
    width: int = 64,
    small_input: bool = False,
    *,
    rng: RngLike | None = None,
) -> Module:
    """A ResNet of `BasicBlock`s with torchvision's names, shapes and init.

    Submodules: `conv1`, `bn1`, `relu`, `maxpool`, `layer1`..`layer4` (each a
    `Sequential` of blocks `"0"`, `"1"`, ...; `layer2`..`layer4` halve the spatial
    size and double the channels), `avgpool` (`AdaptiveAvgPool2d((1, 1))`) and `fc`
    (`Linear(8 * width, num_classes)`). Run with `resnet_apply`: input
    `(N, in_channels, H, W)`, logits `(N, num_classes)`. The config is
    `{"train_mode": True}` (BatchNorm uses batch statistics and updates its running
    statistics); use `{"train_mode": False}` for evaluation.

    Init as torchvision: every convolution from `N(0, 2 / fan_out)` with
    `fan_out = out_channels * kH * kW` (`kaiming_normal_(mode="fan_out",
    nonlinearity="relu")`), BatchNorm weights ones and biases zeros, `fc` PyTorch's
    default `Linear` init.

    **Arguments:**
    - `layers`: the number of blocks in each of the four stages (`(2, 2, 2, 2)` is
      ResNet-18, `(3, 4, 6, 3)` ResNet-34).
    - `num_classes`: the classifier's outputs.
    - `in_channels`: the input's channels.
    - `width`: the channels of the first stage (the stages have `width * (1, 2, 4,
      8)`); torchvision's is 64. Small widths such as 8 make small, fast models.
    - `small_input`: a stem for small images (CIFAR's 32x32, 8x8 digits): `conv1` is
      a 3x3 convolution with stride 1 and padding 1, and `maxpool` is an `Identity`,
      so `layer1` sees the full resolution instead of a quarter of it. The names stay
      torchvision's; only `conv1.weight`'s shape differs. Default: torchvision's 7x7
      stride-2 convolution and 3x3 stride-2 max pooling.
    - `rng`: a PRNG key (or int seed); defaults to the next key of `hax.rng_context`.
    """
    stages = tuple(layers)
    if len(stages) != 4 or not all(isinstance(n, int) and n >= 1 for n in stages):
        raise ValueError(
            f"ResNet: layers must be 4 positive ints (blocks per stage), found {layers!r}; "
            "ResNet-18 is (2, 2, 2, 2)"
        )
    if width < 1:
        raise ValueError(f"ResNet: width must be a positive int, found {width!r}")
    org = StateOrganizer()
    with rng_context(resolve_rng(rng, "ResNet")):
        if small_input:
            org.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        else:
            org.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        org.bn1 = nn.BatchNorm2d(width)
        org.relu = nn.ReLU(inplace=True)
        org.maxpool = nn.Identity() if small_input else nn.MaxPool2d(3, 2, 1)
        inplanes = width
        for i, blocks in enumerate(stages):
            planes = width * 2**i
            setattr(org, f"layer{i + 1}", _make_layer(inplanes, planes, blocks, 1 if i == 0 else 2))
            inplanes = planes
        org.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        org.fc = nn.Linear(inplanes, num_classes)
        init_key = next_rng_key("ResNet")
    tree, config = org.create_module(resnet_apply)  # validated
    # The same shapes and dtypes: no need to validate again.
    return reinit_normal(tree, init_key, _kaiming_fan_out), config


layer("ResNet", resnet_apply)


def resnet18(num_classes: int = 1000, **kwargs: Any) -> Module:
    """ResNet-18: `ResNet(layers=(2, 2, 2, 2), num_classes=num_classes, **kwargs)`.

    With the defaults, its params and buffers match torchvision's `resnet18()` by
    name and shape.
    """
    return ResNet((2, 2, 2, 2), num_classes, **kwargs)
