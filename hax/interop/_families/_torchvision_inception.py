"""torchvision's GoogLeNet and Inception3 (`googlenet`, `inception_v3`): their
`BasicConv2d`, the branches of each Inception block concatenated, the optional input
transform, and the auxiliary classifiers, which run in train mode only (the output is
then `(logits, aux_logits...)`, as torch's named tuples)."""

from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import InputArray
from ...nn.functional import adaptive_avg_pool2d
from ._randomness import training
from ._registry import register_all
from ._torchvision_cnn import flatten


def transform_input(x: jax.Array) -> jax.Array:
    """`_transform_input`: ImageNet-normalized pixels re-normalized to `(x - 0.5) / 0.5`
    (the scaling the ported weights expect), channel by channel."""
    std = jnp.asarray([0.229, 0.224, 0.225], x.dtype).reshape(1, 3, 1, 1)
    mean = jnp.asarray([0.485, 0.456, 0.406], x.dtype).reshape(1, 3, 1, 1)
    return x[:, :3] * (std / 0.5) + (mean - 0.5) / 0.5


def _pool(x: jax.Array, kind: str, kernel: int, stride: int, padding: int = 0) -> jax.Array:
    """`F.max_pool2d` / `F.avg_pool2d` (zero padding counted, floor mode) over the last
    two axes."""
    window, strides = (1, 1, kernel, kernel), (1, 1, stride, stride)
    pads = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    if kind == "max":
        pooled: jax.Array = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, pads)
        return pooled
    total: jax.Array = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
    return total / (kernel * kernel)


@organized_apply
def basic_conv2d_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`BasicConv2d`: conv, batch norm, ReLU."""
    return jax.nn.relu(org.bn(org.conv(x)))


def _outputs(org: StateOrganizer, logits: jax.Array, *aux: jax.Array | None) -> Any:
    """`eager_outputs`: the logits, or `(logits, *aux)` with `aux_logits` in training."""
    if org.aux_logits and training(org, "the auxiliary classifiers"):
        return (logits, *aux)
    return logits


@organized_apply
def googlenet_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`GoogLeNet`: stem, nine Inception blocks, pool, dropout, `fc`; `aux1`, `aux2` in
    training."""
    x = jnp.asarray(x)
    if org.transform_input:
        x = transform_input(x)
    x = org.maxpool2(org.conv3(org.conv2(org.maxpool1(org.conv1(x)))))
    x = org.maxpool3(org.inception3b(org.inception3a(x)))
    x = org.inception4a(x)
    aux1 = org.aux1(x) if org.aux1 is not None and training(org, "GoogLeNet") else None
    x = org.inception4d(org.inception4c(org.inception4b(x)))
    aux2 = org.aux2(x) if org.aux2 is not None and training(org, "GoogLeNet") else None
    x = org.inception5b(org.inception5a(org.maxpool4(org.inception4e(x))))
    logits: jax.Array = org.fc(org.dropout(flatten(org.avgpool(x))))
    return _outputs(org, logits, aux2, aux1)


@organized_apply
def googlenet_inception_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """GoogLeNet's `Inception`: four branches, concatenated."""
    branches = (org.branch1, org.branch2, org.branch3, org.branch4)
    return jnp.concatenate([branch(x) for branch in branches], axis=1)


@organized_apply
def googlenet_aux_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """GoogLeNet's `InceptionAux`: pool to 4x4, conv, `fc1`, ReLU, dropout, `fc2`."""
    x = flatten(org.conv(adaptive_avg_pool2d(x, (4, 4))))
    return org.fc2(org.dropout(jax.nn.relu(org.fc1(x))))


@organized_apply
def inception3_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`Inception3`: stem, the Mixed blocks, pool, dropout, `fc`; `AuxLogits` in
    training."""
    x = jnp.asarray(x)
    if org.transform_input:
        x = transform_input(x)
    x = org.Conv2d_2b_3x3(org.Conv2d_2a_3x3(org.Conv2d_1a_3x3(x)))
    x = org.maxpool2(org.Conv2d_4a_3x3(org.Conv2d_3b_1x1(org.maxpool1(x))))
    for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e"):
        x = getattr(org, "Mixed_" + name)(x)
    aux_net = org.AuxLogits
    aux = aux_net(x) if aux_net is not None and training(org, "Inception3") else None
    x = org.Mixed_7c(org.Mixed_7b(org.Mixed_7a(x)))
    logits: jax.Array = org.fc(flatten(org.dropout(org.avgpool(x))))
    return _outputs(org, logits, aux)


def _chain(org: StateOrganizer, x: jax.Array, *names: str) -> jax.Array:
    """The children `names` one after another."""
    for name in names:
        x = getattr(org, name)(x)
    return x


@organized_apply
def inception_a_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`InceptionA`: 1x1, 5x5, double 3x3 and average-pool branches."""
    return jnp.concatenate(
        [
            org.branch1x1(x),
            _chain(org, x, "branch5x5_1", "branch5x5_2"),
            _chain(org, x, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
            org.branch_pool(_pool(x, "avg", 3, 1, 1)),
        ],
        axis=1,
    )


@organized_apply
def inception_b_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`InceptionB`: strided 3x3, double 3x3 and max-pool branches."""
    return jnp.concatenate(
        [
            org.branch3x3(x),
            _chain(org, x, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
            _pool(x, "max", 3, 2),
        ],
        axis=1,
    )


@organized_apply
def inception_c_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`InceptionC`: 1x1, factorized 7x7, double 7x7 and average-pool branches."""
    dbl = [f"branch7x7dbl_{i}" for i in range(1, 6)]
    return jnp.concatenate(
        [
            org.branch1x1(x),
            _chain(org, x, "branch7x7_1", "branch7x7_2", "branch7x7_3"),
            _chain(org, x, *dbl),
            org.branch_pool(_pool(x, "avg", 3, 1, 1)),
        ],
        axis=1,
    )


@organized_apply
def inception_d_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`InceptionD`: strided 3x3, strided 7x7x3 and max-pool branches."""
    seven = [f"branch7x7x3_{i}" for i in range(1, 5)]
    return jnp.concatenate(
        [
            _chain(org, x, "branch3x3_1", "branch3x3_2"),
            _chain(org, x, *seven),
            _pool(x, "max", 3, 2),
        ],
        axis=1,
    )


@organized_apply
def inception_e_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`InceptionE`: 1x1, split 3x3, split double 3x3 and average-pool branches."""
    b3 = org.branch3x3_1(x)
    b3 = jnp.concatenate([org.branch3x3_2a(b3), org.branch3x3_2b(b3)], axis=1)
    dbl = _chain(org, x, "branch3x3dbl_1", "branch3x3dbl_2")
    dbl = jnp.concatenate([org.branch3x3dbl_3a(dbl), org.branch3x3dbl_3b(dbl)], axis=1)
    pool = org.branch_pool(_pool(x, "avg", 3, 1, 1))
    return jnp.concatenate([org.branch1x1(x), b3, dbl, pool], axis=1)


@organized_apply
def inception3_aux_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """Inception3's `InceptionAux`: 5x5 average pool (stride 3), two convs, global
    pool, `fc`."""
    x = org.conv1(org.conv0(_pool(x, "avg", 5, 3)))
    return org.fc(flatten(jnp.mean(x, axis=(2, 3), keepdims=True)))


register_all(
    "torchvision.models.",
    {
        "googlenet.GoogLeNet": googlenet_apply,
        "googlenet.Inception": googlenet_inception_apply,
        "googlenet.InceptionAux": googlenet_aux_apply,
        "googlenet.BasicConv2d": basic_conv2d_apply,
        "inception.Inception3": inception3_apply,
        "inception.InceptionA": inception_a_apply,
        "inception.InceptionB": inception_b_apply,
        "inception.InceptionC": inception_c_apply,
        "inception.InceptionD": inception_d_apply,
        "inception.InceptionE": inception_e_apply,
        "inception.InceptionAux": inception3_aux_apply,
        "inception.BasicConv2d": basic_conv2d_apply,
    },
)
