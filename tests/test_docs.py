"""The README's example runs, and the quickstart example trains."""

import pathlib
import re
import subprocess
import sys

import jax.numpy as jnp

ROOT = pathlib.Path(__file__).resolve().parent.parent


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
