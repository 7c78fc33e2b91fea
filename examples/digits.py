"""HAX's flagship example: a small CNN on scikit-learn's 8x8 digits, then surgery,
checkpoints and hypergradients on the trained model.

1. Builds a CNN with `StateOrganizer` and trains it with optax under `hax.jit`.
2. Surgery: captures an intermediate feature map, swaps the head and fine-tunes it
   with the body frozen, and transfers the weights into a wider model.
3. Saves a checkpoint, reloads it and checks the outputs are identical.
4. Tunes the SGD learning rate by hypergradient descent through unrolled training.

Run: `python examples/digits.py [--epochs 15] [--seed 0] [--out digits_out]`
(needs the `examples` extra: scikit-learn for the data, tqdm, matplotlib).
"""

import argparse
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import hax
from hax import nn
from hax.nn import functional as F

Batch = tuple[jax.Array, jax.Array]


# ---------------------------------------------------------------- the model


@hax.organized_apply
def cnn_apply(org: hax.StateOrganizer, x: jax.Array) -> jax.Array:
    """`(N, 1, 8, 8)` images -> `(N, 10)` logits."""
    x = org.relu(org.bn1(org.conv1(x)))
    x = org.pool(org.relu(org.bn2(org.conv2(x))))
    x = org.drop(org.relu(org.fc(org.flatten(x))))
    return org.head(x)


@hax.organized_init(cnn_apply)
def DigitsCNN(org: hax.StateOrganizer, width: int = 16, hidden: int = 64, dropout: float = 0.1):
    """conv-bn-relu x2, 2x2 max-pool, a hidden Linear with dropout, a 10-way head."""
    org.conv1 = nn.Conv2d(1, width, 3, padding=1)
    org.bn1 = nn.BatchNorm2d(width)
    org.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
    org.bn2 = nn.BatchNorm2d(2 * width)
    org.relu = nn.ReLU()
    org.pool = nn.MaxPool2d(2)
    org.flatten = nn.Flatten()
    org.fc = nn.Linear(2 * width * 16, hidden)
    org.drop = nn.Dropout(dropout)
    org.head = nn.Linear(hidden, 10)


# ---------------------------------------------------------------- data and training


def load_digits(seed: int) -> tuple[Batch, Batch]:
    """scikit-learn's bundled 1,797 digits (no download): 1,437 train, 360 test."""
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8) in [0, 1]
    y = data.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[:360], order[360:]
    return (jnp.asarray(x[train]), jnp.asarray(y[train])), (
        jnp.asarray(x[test]),
        jnp.asarray(y[test]),
    )


def batches(data: Batch, batch_size: int, rng: np.random.Generator) -> Iterator[Batch]:
    """Shuffled full batches of one epoch."""
    order = rng.permutation(len(data[1]))
    for i in range(0, len(order) - batch_size + 1, batch_size):
        idx = order[i : i + batch_size]
        yield data[0][idx], data[1][idx]


def make_loss(config: hax.GlobalConfig):
    def loss_fn(tree: hax.StructureTree, batch: Batch) -> tuple[jax.Array, Any]:
        new_tree, logits = hax.apply_tree(tree, config, batch[0])
        return F.cross_entropy(logits, batch[1]), new_tree

    return loss_fn


@hax.jit
def accuracy(tree: hax.StructureTree, config: hax.GlobalConfig, data: Batch) -> jax.Array:
    _, logits = hax.apply_tree(tree, {**config, "train_mode": False}, data[0])
    return jnp.mean(jnp.argmax(logits, -1) == data[1])


def train(
    tree: hax.StructureTree,
    config: hax.GlobalConfig,
    train_data: Batch,
    test_data: Batch,
    *,
    epochs: int,
    seed: int,
    optimizer: optax.GradientTransformation,
    desc: str,
    history: dict[str, list[float]] | None = None,
) -> hax.StructureTree:
    """Train with a progress bar showing the loss and the test accuracy."""
    from tqdm import tqdm

    step = hax.jit(hax.optim.train_step(make_loss(config), optimizer))
    opt_state = optimizer.init(hax.optim.params_of(tree))
    rng = np.random.default_rng(seed)
    steps_per_epoch = len(train_data[1]) // 64
    with tqdm(total=epochs * steps_per_epoch, desc=desc, unit="step", leave=False) as bar:
        for _ in range(epochs):
            for batch in batches(train_data, 64, rng):
                tree, opt_state, metrics = step(tree, opt_state, batch)
                loss = float(metrics["loss"])
                if history is not None:
                    history["loss"].append(loss)
                bar.set_postfix(loss=f"{loss:.3f}")
                bar.update()
            acc = float(accuracy(tree, config, test_data))
            if history is not None:
                history["test_acc"].append(acc)
            bar.set_postfix(loss=f"{loss:.3f}", test_acc=f"{acc:.3f}")
    return tree


# ---------------------------------------------------------------- the tour


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=15, help="training epochs (default 15)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the init")
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path("digits_out"),
        help="folder for the plot and the checkpoint (default digits_out)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    train_data, test_data = load_digits(args.seed)

    # 1. Train.
    with hax.rng_context(args.seed):
        tree, config = DigitsCNN()
    print(f"DigitsCNN: {sum(v.size for _, v in hax.named_leaves(tree, ['params'])):,} params")
    history: dict[str, list[float]] = {"loss": [], "test_acc": []}
    tree = train(
        tree,
        config,
        train_data,
        test_data,
        epochs=args.epochs,
        seed=args.seed,
        optimizer=optax.adam(3e-3),
        desc="train",
        history=history,
    )
    acc = float(accuracy(tree, config, test_data))
    print(f"[train] test accuracy after {args.epochs} epochs: {acc:.2%}")
    plot(history, args.out / "digits_training.png")

    # 2. Surgery.
    x_test = test_data[0]
    _, _, captured = hax.surgery.intermediates(
        tree, {**config, "train_mode": False}, "conv2", x_test
    )
    (fmap,) = captured["conv2"]
    print(
        f"[surgery] conv2 feature map captured: shape {fmap.shape}, mean {float(fmap.mean()):.3f}"
    )

    with hax.rng_context(args.seed + 1):
        new_tree, config = hax.surgery.replace(tree, "head", nn.Linear(64, 10), config=config)
    new_tree = hax.surgery.unfreeze(hax.surgery.freeze(new_tree, ""), "head")
    acc = float(accuracy(new_tree, config, test_data))
    print(f"[surgery] head swapped for a fresh Linear(64, 10): test accuracy {acc:.2%}")
    only_head = optax.multi_transform(
        {True: optax.adam(3e-3), False: optax.set_to_zero()},
        hax.surgery.trainable_mask(new_tree),
    )
    new_tree = train(
        new_tree,
        config,
        train_data,
        test_data,
        epochs=2,
        seed=args.seed,
        optimizer=only_head,
        desc="fine-tune head",
    )
    body_same = all(
        np.array_equal(a, b)
        for (name, a), (_, b) in zip(
            hax.named_leaves(new_tree, ["params"]), hax.named_leaves(tree, ["params"]), strict=True
        )
        if not name.startswith("head/")
    )
    acc = float(accuracy(new_tree, config, test_data))
    print(
        f"[surgery] head fine-tuned 2 epochs, body frozen (unchanged: {body_same}): "
        f"test accuracy {acc:.2%}"
    )

    with hax.rng_context(args.seed + 2):
        wide, wide_config = DigitsCNN(hidden=128)
    wide, report = hax.surgery.transfer(tree, wide)
    print(f"[surgery] transfer into a model with a 128-wide hidden layer:\n{report}")
    wide = train(
        wide,
        wide_config,
        train_data,
        test_data,
        epochs=2,
        seed=args.seed,
        optimizer=optax.adam(3e-3),
        desc="fine-tune wide",
    )
    acc = float(accuracy(wide, wide_config, test_data))
    print(f"[surgery] wider model after 2 epochs: test accuracy {acc:.2%}")

    # 3. Checkpoint.
    path = args.out / "digits.safetensors"
    hax.checkpoint.save(path, tree, config)
    with hax.rng_context(args.seed + 3):
        fresh, _ = DigitsCNN()
    loaded, loaded_config = hax.checkpoint.load(path, like=fresh)
    _, before = hax.apply_tree(tree, {**config, "train_mode": False}, x_test)
    _, after = hax.apply_tree(loaded, {**loaded_config, "train_mode": False}, x_test)
    print(
        f"[checkpoint] saved {path.stat().st_size:,} bytes to {path}; reloaded into a fresh "
        f"model: identical outputs: {bool(jnp.array_equal(before, after))}"
    )

    # 4. Hypergradients: tune a too-small SGD learning rate through 10 unrolled steps.
    hypergradient_demo(train_data, args.seed)

    print(f"done in {time.perf_counter() - start:.0f} s")


def hypergradient_demo(
    train_data: Batch, seed: int, unrolled: int = 10, meta_steps: int = 5
) -> None:
    """Differentiate the loss on held-out examples after `unrolled` SGD steps with
    respect to the (log) learning rate, and take a few steps of gradient descent on it."""
    with hax.rng_context(seed + 4):
        tree, config = DigitsCNN(dropout=0.0)
    loss_fn = make_loss(config)
    n = unrolled * 64
    xs = train_data[0][:n].reshape(unrolled, 64, 1, 8, 8)
    ys = train_data[1][:n].reshape(unrolled, 64)
    held_out = (train_data[0][n : n + 256], train_data[1][n : n + 256])

    def val_loss(tree: hax.StructureTree, batch: Batch) -> jax.Array:
        return loss_fn(tree, batch)[0]

    hypergrad = hax.jit(hax.meta.hypergradient(hax.meta.sgd_step(loss_fn), val_loss))

    def evaluate(log_lr: jax.Array) -> tuple[float, float]:
        lr = jnp.exp(log_lr)
        loss, grads = hypergrad({"learning_rate": lr}, tree, (xs, ys), held_out)
        return float(loss), float(grads["learning_rate"] * lr)  # d/d(log lr) = lr d/d(lr)

    # Gradient descent on log(lr) with a step that halves whenever the loss rises.
    log_lr, step = jnp.log(jnp.asarray(1e-3)), 1.0
    loss, d_log_lr = evaluate(log_lr)
    print(
        f"[hypergradient] lr {float(jnp.exp(log_lr)):.4f}: held-out loss after {unrolled} "
        f"SGD steps {loss:.4f}, d loss / d log(lr) {d_log_lr:+.4f}"
    )
    for _ in range(meta_steps):
        candidate = log_lr - step * float(np.sign(d_log_lr))
        new_loss, new_d = evaluate(candidate)
        accepted = new_loss < loss
        print(
            f"[hypergradient] lr {float(jnp.exp(candidate)):.4f}: held-out loss {new_loss:.4f}"
            f" ({'accepted' if accepted else 'rejected: halving the step'})"
        )
        if accepted:
            log_lr, loss, d_log_lr = candidate, new_loss, new_d
        else:
            step /= 2


def plot(history: dict[str, list[float]], path: pathlib.Path) -> None:
    """Training loss per step and test accuracy per epoch, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(history["loss"])
    left.set(xlabel="step", ylabel="train loss", yscale="log", title="loss")
    right.plot(range(1, len(history["test_acc"]) + 1), history["test_acc"], marker="o")
    right.set(xlabel="epoch", ylabel="test accuracy", title="accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"[plot] training curves saved to {path}")


if __name__ == "__main__":
    main()
