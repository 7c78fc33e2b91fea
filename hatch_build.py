"""Builds `hax._fastpath`, the C matcher and builder of `hax.jit`, when the machine has
a C compiler. Without one (or if compiling fails), HAX installs as pure Python and
`hax.jit` uses the Python code it generates instead: the same behaviour, slower calls."""

import os
import pathlib
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]  # hatchling's generic base
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        source = pathlib.Path(self.root) / "hax" / "_fastpath.c"
        name = "_fastpath" + sysconfig.get_config_var("EXT_SUFFIX")
        if version == "editable":  # next to the sources, which the install points to
            target = source.with_name(name)
        else:  # a file for the wheel only, removed in `finalize`
            self._scratch = tempfile.mkdtemp()
            target = pathlib.Path(self._scratch) / name
        if not self._compile(source, target):
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][str(target)] = f"hax/{name}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    def _compile(self, source: pathlib.Path, target: pathlib.Path) -> bool:
        link = sysconfig.get_config_var("LDSHARED")
        if os.name == "nt" or not link:
            self.app.display_warning("hax: no C toolchain known here; hax.jit uses Python code")
            return False
        include = sysconfig.get_paths()["include"]
        # Into a temporary file, then renamed: a process that has the old module loaded
        # keeps its (unlinked) file intact.
        partial = target.with_name(target.name + ".partial")
        command = [
            *shlex.split(link),
            *shlex.split(sysconfig.get_config_var("CCSHARED") or ""),
            "-O2",
            f"-I{include}",
            str(source),
            "-o",
            str(partial),
        ]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as err:
            detail = getattr(err, "stderr", "") or str(err)
            self.app.display_warning(
                f"hax: could not compile {source.name}; hax.jit uses Python code:\n{detail}"
            )
            partial.unlink(missing_ok=True)
            return False
        os.replace(partial, target)
        return True
