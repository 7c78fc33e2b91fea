"""The wheel ships what a user's type checker needs: HAX's `py.typed` and the optax stub."""

import pathlib
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
