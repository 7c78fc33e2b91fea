"""The digits CNN of `examples/digits.py`: PyTorch parity of training, mixed precision."""

import pathlib
import sys

import numpy as np
import optax
import pytest
import torch

import hax
import hax.precision

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "examples"))
digits = pytest.importorskip("digits", reason="examples/digits.py needs scikit-learn")


class TorchDigitsCNN(torch.nn.Module):
    """The same network in PyTorch, with the same attribute names."""

    def __init__(self, width=16, hidden=64):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, width, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(width)
        self.conv2 = torch.nn.Conv2d(width, 2 * width, 3, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(2 * width)
        self.relu = torch.nn.ReLU()
        self.pool = torch.nn.MaxPool2d(2)
        self.flatten = torch.nn.Flatten()
        self.fc = torch.nn.Linear(2 * width * 16, hidden)
        self.drop = torch.nn.Dropout(0.0)
        self.head = torch.nn.Linear(hidden, 10)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.pool(self.relu(self.bn2(self.conv2(x))))
        x = self.drop(self.relu(self.fc(self.flatten(x))))
        return self.head(x)


def hax_to_torch(tree, torch_model):
    """Copy HAX's params and buffers into the torch model (names map one to one)."""
    state = {}
    for name, value in hax.named_leaves(tree):
        node, _, leaf = name.rpartition("/")
        node = node.replace("/params", "").replace("/buffers", "").replace("/", ".")
        if leaf == "rng":
            continue
        state[f"{node}.{leaf}"] = torch.from_numpy(np.array(value))
    torch_model.load_state_dict(state)


def test_training_loss_matches_pytorch_for_20_steps():
    (x, y), _ = digits.load_digits(seed=0)
    with hax.rng_context(0):
        tree, config = digits.DigitsCNN(dropout=0.0)
    torch_model = TorchDigitsCNN()
    hax_to_torch(tree, torch_model)
    optimizer = optax.adam(3e-3)
    torch_opt = torch.optim.Adam(torch_model.parameters(), lr=3e-3)
    step = hax.jit(hax.optim.train_step(digits.make_loss(config), optimizer))
    opt_state = optimizer.init(hax.optim.params_of(tree))
    rng = np.random.default_rng(0)
    batches = [next(digits.batches((x, y), 64, rng)) for _ in range(20)]
    for i, (bx, by) in enumerate(batches):
        tree, opt_state, metrics = step(tree, opt_state, (bx, by))
        torch_opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            torch_model(torch.from_numpy(np.array(bx))), torch.from_numpy(np.array(by)).long()
        )
        loss.backward()
        torch_opt.step()
        assert abs(float(metrics["loss"]) - loss.item()) <= 1e-4, (
            i,
            float(metrics["loss"]),
            loss.item(),
        )
    # running statistics followed along too
    np.testing.assert_allclose(
        tree["submodules"]["bn2"]["buffers"]["running_var"],
        torch_model.bn2.running_var.numpy(),
        rtol=1e-4,
        atol=1e-5,
    )


def test_bfloat16_training_is_within_one_point_of_float32():
    train_data, test_data = digits.load_digits(seed=0)
    accuracies = {}
    for compute in ("float32", "bfloat16"):
        with hax.rng_context(0):
            tree, config = digits.DigitsCNN()
        tree = hax.precision.mixed_precision(tree, hax.precision.Policy(compute_dtype=compute))
        tree = digits.train(
            tree,
            config,
            train_data,
            test_data,
            epochs=8,
            seed=0,
            optimizer=optax.adam(3e-3),
            desc=compute,
        )
        accuracies[compute] = float(digits.accuracy(tree, config, test_data))
    assert accuracies["float32"] >= 0.97
    assert abs(accuracies["bfloat16"] - accuracies["float32"]) <= 0.01, accuracies
