"""Run a plugin that is a Python package from its verified copy, not from where it is installed.

    python -m tritium.plugin_host.sandbox.run_copy <package folder> <module> [args...]

A builtin plugin's entry is `{python} -m tritium.plugins.<pkg>`: left alone, Python would import it
from the installed tree, which may have changed since it was verified. This binds `<module>` to
`<package folder>` (the verified, read-only copy) before anything imports it, so the package and all
its submodules load from the copy; then it runs `<module>.__main__` as `python -m` would.
SignatureVerifier rewrites such entries to use it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import runpy
import sys


def main() -> None:
    """Entry point: see the module docstring."""
    folder, module = sys.argv[1], sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    parent, _, leaf = module.rpartition(".")
    if parent:
        importlib.import_module(parent)
    spec = importlib.util.spec_from_file_location(
        module, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder]
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"run_copy: {folder} is not a Python package")
    package = importlib.util.module_from_spec(spec)
    sys.modules[module] = package
    if parent:
        setattr(sys.modules[parent], leaf, package)
    spec.loader.exec_module(package)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
