"""The wheel ships what a user's type checker needs (HAX's `py.typed`, the optax stub) and
hax.jit's C fast path where it can be compiled."""

import pathlib
import shutil
import sysconfig
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_wheel_ships_type_information(tmp_path):
    wheel = pytest.importorskip("hatchling.builders.wheel")
    (path,) = wheel.WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"])
    names = set(zipfile.ZipFile(path).namelist())
    assert {"hax/py.typed", "optax-stubs/__init__.pyi", "optax-stubs/py.typed"} <= names
    assert zipfile.ZipFile(path).read("optax-stubs/py.typed") == b"partial\n"
    assert not any(name.startswith("optax/") for name in names)  # never shadows optax itself
    if shutil.which("cc") or shutil.which("gcc"):  # hax.jit's C fast path is compiled in
        assert f"hax/_fastpath{sysconfig.get_config_var('EXT_SUFFIX')}" in names


def test_the_installed_hax_has_its_c_fast_path():
    """Where a C compiler is present, installing HAX builds `hax._fastpath` (an install
    without one still works, on generated Python code; see tests/test_jit_fastpath.py)."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler here")
    from hax import _pytree_code

    assert _pytree_code.NATIVE is not None
