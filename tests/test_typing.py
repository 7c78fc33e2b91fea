"""mypy --strict accepts correct HAX code and rejects mistakes on the line they are made.

The snippets are the files of `tests/typing/` (see its README): one mypy run checks
them all, as a user's strict project would, with the optax stub HAX ships.
"""

import pathlib
import re

import pytest

mypy_api = pytest.importorskip("mypy.api")

ROOT = pathlib.Path(__file__).resolve().parent.parent
SNIPPETS = ROOT / "tests" / "typing"
MESSAGE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<text>.*)$")
REVEALED = re.compile(r'^Revealed type is "(?P<type>.*)"$')
# How mypy spells a structure tree: by name, or (where a TypeVar lost the name) by its
# five keys, in an order that depends on mypy's cache.
TREE_HEADS = ("TypedDict(hax._types.StructureTree, {", "TypedDict({")
TREE_KEYS = (
    "'params': ",
    "'buffers': ",
    "'aux': ",
    "'apply': hax._types.ApplyFn",
    "'submodules': ",
)


def short_type(text: str) -> str:
    """A revealed type as a reader writes it: each spelt-out structure tree (a page of
    nested TypedDicts) is `StructureTree`, and `jax.Array` is not `jax._src...`."""
    out, i = [], 0
    while i < len(text):
        if not text.startswith(TREE_HEADS, i):
            out.append(text[i])
            i += 1
            continue
        depth, end = 0, i + len("TypedDict")
        while True:  # to the parenthesis that closes this TypedDict(
            depth += (text[end] in "([{") - (text[end] in ")]}")
            end += 1
            if depth == 0:
                break
        whole = short_type(text[i + len("TypedDict(") : end - 1])  # its inner trees first
        named = text.startswith(TREE_HEADS[0], i)
        if named or (whole.count(": ") == len(TREE_KEYS) and all(k in whole for k in TREE_KEYS)):
            out.append("StructureTree")
        else:
            out.append(f"TypedDict({whole})")
        i = end
    return "".join(out).replace("jax._src.basearray.Array", "jax.Array")


def test_short_type_names_whole_trees_only():
    tree = "TypedDict(hax._types.StructureTree, {'params': dict[str, jax._src.basearray.Array]})"
    anonymous = (
        "TypedDict({'params': P, 'buffers': B, 'aux': A, 'apply': hax._types.ApplyFn, "
        "'submodules': dict[str, " + tree + "]})"
    )
    assert short_type(f"tuple[{tree}, dict[str, Any]]") == "tuple[StructureTree, dict[str, Any]]"
    assert short_type(f"def ({anonymous}) -> {tree}") == "def (StructureTree) -> StructureTree"
    assert short_type("TypedDict({'a': int})") == "TypedDict({'a': int})"
    keys = "'submodules': dict[str, Any], 'apply': hax._types.ApplyFn, 'aux': A, 'buffers': B"
    assert short_type("TypedDict({'params': P, " + keys + "})") == "StructureTree"
    assert short_type("TypedDict({" + keys + "})") == "TypedDict({" + keys + "})"


def _markers(path: pathlib.Path, tag: str) -> dict[int, str]:
    """`{line: text after the tag}` for the lines of `path` that carry `# tag`."""
    found = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if f"# {tag}" in line:
            found[number] = line.partition(f"# {tag}")[2].lstrip(":").strip()
    return found


def test_mypy_accepts_correct_code_and_rejects_each_mistake():
    files = sorted(SNIPPETS.glob("*.py"))
    stdout, stderr, _ = mypy_api.run(
        [
            "--strict",
            "--no-error-summary",
            "--show-error-codes",
            "--hide-error-context",
            "--no-pretty",
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "--config-file",
            str(ROOT / "mypy.ini"),
            *map(str, files),
        ]
    )
    errors: dict[tuple[str, int], list[str]] = {}
    notes: dict[tuple[str, int], list[str]] = {}
    for line in stdout.splitlines():
        m = MESSAGE.match(line)
        if m:
            table = errors if m["kind"] == "error" else notes
            key = (pathlib.Path(m["file"]).name, int(m["line"]))
            table.setdefault(key, []).append(m["text"])
    assert files and not stderr, stderr
    problems = []
    expected_errors = 0
    for path in files:
        expected = _markers(path, "expect-error")
        expected_errors += len(expected)
        if expected and not path.name.startswith("bad_"):
            problems.append(f"{path.name}: expect-error markers belong in bad_*.py files")
        for number, code in expected.items():
            got = errors.get((path.name, number), [])
            if not got:
                problems.append(f"{path.name}:{number}: no error, expected one")
            elif code and not any(text.endswith(f"[{code}]") for text in got):
                problems.append(f"{path.name}:{number}: expected [{code}], found {got}")
        for (name, number), got in errors.items():
            if name == path.name and number not in expected:
                problems.append(f"{path.name}:{number}: unexpected {got}")
        for number, text in _markers(path, "reveal").items():
            revealed = [
                short_type(m["type"])
                for note in notes.get((path.name, number), [])
                if (m := REVEALED.match(note))
            ]
            if revealed != [text]:
                problems.append(f"{path.name}:{number}: revealed {revealed}, expected {text!r}")
    assert expected_errors >= 25
    assert not problems, "\n".join(problems) + "\n\n" + stdout
