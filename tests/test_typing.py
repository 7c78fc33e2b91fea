"""mypy rejects wrong uses of HAX's types (the TypedDict tree, ApplyFn, Module)."""

import pathlib
import textwrap

import pytest

mypy_api = pytest.importorskip("mypy.api")

ROOT = pathlib.Path(__file__).resolve().parent.parent

SNIPPET = textwrap.dedent(
    """
    import jax
    import jax.numpy as jnp

    import hax

    tree, config = hax.nn.Linear(2, 2, rng=0)
    new_tree, out = hax.apply_tree(tree, config, jnp.ones(2))
    checked: hax.StructureTree = hax.validate(tree)
    state, apply = hax.bind_module(tree, config)


    def good_apply(
        tree: hax.StructureTree, config: hax.GlobalConfig, x: jax.Array
    ) -> tuple[hax.StructureTree, jax.Array]:
        return tree, x


    def bad_apply(x: int) -> int:
        return x


    node: hax.StructureTree = {
        "params": {}, "buffers": {}, "aux": {}, "apply": good_apply, "submodules": {}
    }
    hax.apply_tree([1, 2], config, jnp.ones(2))  # ERROR arg-type: a list, not a tree
    partial: hax.StructureTree = {"params": {}}  # ERROR typeddict-item: missing keys
    wrong: hax.StructureTree = {
        "params": {}, "buffers": {}, "aux": {}, "apply": bad_apply, "submodules": {}  # ERROR
    }
    hax.bind_module(tree, [config])  # ERROR arg-type: a list, not a config
    """
)


def test_mypy_accepts_good_uses_and_rejects_wrong_ones(tmp_path):
    path = tmp_path / "snippet.py"
    path.write_text(SNIPPET)
    stdout, stderr, _ = mypy_api.run(
        [
            "--strict",
            "--no-error-summary",
            "--show-error-codes",
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "--config-file",
            str(ROOT / "mypy.ini"),
            str(path),
        ]
    )
    expected = {i for i, line in enumerate(SNIPPET.splitlines(), 1) if "# ERROR" in line}
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert {int(line.split(":")[1]) for line in errors} == expected, stdout + stderr
    for i, line in enumerate(SNIPPET.splitlines(), 1):
        code = line.partition("# ERROR")[2].split(":")[0].strip()
        if code:
            assert any(f":{i}:" in e and f"[{code}]" in e for e in errors), (i, stdout)
