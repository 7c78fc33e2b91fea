"""The README's example runs, and the quickstart example trains."""

import os
import pathlib
import re
import subprocess
import sys

import jax.numpy as jnp
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


# The registry's torchvision build needs its op schemas declared before `transformers`
# (which imports torchvision when it is installed) loads a model: see conftest.
_PRELUDE = (
    "import sys; sys.path.insert(0, {tests!r})\n"
    "from conftest import import_torchvision\n"
    "try:\n    import_torchvision()\nexcept BaseException:\n    pass\n"
)


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_every_readme_python_block_runs_as_written(index):
    """Each block is complete: run alone, in a fresh interpreter, it succeeds."""
    code = _python_blocks()[index]
    prelude = _PRELUDE.format(tests=str(ROOT / "tests"))
    if "XLA_FLAGS" in code:  # the block sets up devices before jax starts: run it first
        prelude = ""
    result = subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 0, f"README block {index}:\n{code}\n{result.stderr[-3000:]}"


def test_readme_example_runs_and_trains():
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S)
    assert code is not None, "the README has no python example"
    namespace: dict = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    step, tree, config = namespace["step"], namespace["tree"], namespace["config"]
    x, y = jnp.ones((8, 4)), jnp.zeros((8, 1))
    first = float(namespace["loss"])
    for _ in range(20):
        tree, loss = step(tree, config, x, y)
    assert float(loss) < first


def test_quickstart_example_trains():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--steps", "400"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    losses = [float(v) for v in re.findall(r"train loss ([0-9.]+)", result.stdout)]
    assert len(losses) >= 2 and losses[-1] < 0.5 * losses[0], result.stdout
    assert "final eval loss" in result.stdout


def test_digits_example_end_to_end(tmp_path):
    """The README's first command: trains to >= 97% and prints every surgery step."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "digits.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    out = result.stdout
    accuracy = re.search(r"\[train\] test accuracy after \d+ epochs: ([0-9.]+)%", out)
    assert accuracy is not None and float(accuracy.group(1)) >= 97.0, out
    for step in (
        "conv2 feature map captured",
        "head fine-tuned",
        "TransferReport",
        "wider model after",
        "identical outputs: True",
        "[hypergradient]",
    ):
        assert step in out, (step, out)
    assert "body frozen (unchanged: True)" in out
    assert (tmp_path / "digits_training.png").stat().st_size > 0
    assert (tmp_path / "digits.safetensors").exists()


def test_sharded_training_example_runs_on_8_cpu_devices():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sharded_training.py"), "--steps", "10"],
        env={**os.environ, "JAX_PLATFORMS": "cpu"},  # the 8 virtual devices, even beside a GPU
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    out = result.stdout
    assert "8 cpu devices, mesh {'data': 4, 'model': 2}" in out, out
    losses = [float(v) for v in re.findall(r"loss ([0-9.]+)", out)]
    assert len(losses) == 2 and losses[1] < losses[0], out
    assert "stored as PartitionSpec('model', 'data')" in out or "P('model', 'data')" in out, out
    assert "identical params: True" in out


def test_char_lm_example_trains_and_samples():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "char_lm.py"), "--steps", "30", "--sample", "40"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    loss = re.search(r"final train loss ([0-9.]+) \(uniform guessing: ([0-9.]+)\)", result.stdout)
    assert loss is not None and float(loss.group(1)) < float(loss.group(2)), result.stdout
    sample = result.stdout.split("sample:\n", 1)[1].rsplit("\ndone in", 1)[0]
    assert sample.startswith("def ") and len(sample) == len("def ") + 40


def test_readme_summary_table_is_what_summary_prints():
    import hax

    readme = (ROOT / "README.md").read_text()
    start = readme.index("<details><summary>the table</summary>")
    table = re.search(r"```text\n(.*?)```", readme[start:], re.S)
    assert table is not None
    with hax.rng_context(0):
        tree, config = hax.models.resnet18(num_classes=10, width=8, small_input=True)
    assert table.group(1).strip() == hax.summary(tree, config).strip()


def test_ci_runs_the_test_commands_the_readme_gives():
    readme = (ROOT / "README.md").read_text()
    extra = re.findall(r"^(HAX_\w+=1 pytest -q -m \"not \w+\".*)$", readme, re.M)
    commands = ["ruff check . && mypy && pytest -q", *extra]
    assert len(commands) == 3 and all(c in readme for c in commands)
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert [line for line in ci_lines if line in commands] == commands
