"""A user's model as ``module:callable`` (``mypkg.nets:build_cnn``), checked without importing torch or the module.

The train job imports the module from its working directory or ``PYTHONPATH``; at submit time the module's file
is looked for on the same path (the current directory first, then ``sys.path``), walking the packages'
directories with ``importlib.machinery.PathFinder`` so that no package's ``__init__`` runs on the login node
(only a top-level name PathFinder does not know is asked of ``importlib.util.find_spec``, which imports nothing).
"""

from __future__ import annotations

import importlib.util
import keyword
import os
import sys
from importlib.machinery import PathFinder
from pathlib import Path

EXAMPLE = "mypkg.nets:build_cnn"


def is_model_ref(name: str) -> bool:
    """Whether ``name`` means a user's callable rather than a torchvision builder."""
    return ":" in name


def ref_syntax_problem(ref: str) -> str | None:
    """Why ``ref`` is not a ``module:callable`` reference, or None when it is one."""
    module, _, func = ref.partition(":")
    parts = module.split(".")
    if not all(_identifier(p) for p in parts) or not _identifier(func):
        return f"{ref!r} is not a module:callable reference of Python identifiers, e.g. {EXAMPLE!r}"
    return None


def _identifier(text: str) -> bool:
    return text.isidentifier() and not keyword.iskeyword(text)


def split_ref(ref: str) -> tuple[str, str]:
    module, _, func = ref.partition(":")
    return module, func


def search_path() -> list[str]:
    """Where the job looks for the module: its working directory, then ``sys.path`` (which holds PYTHONPATH)."""
    return [os.getcwd(), *(p or os.getcwd() for p in sys.path)]


def module_file(module: str, path: list[str] | None = None) -> Path | None:
    """The file (or package directory) of ``module`` on ``path``, found without executing any of it."""
    locations: list[str] | None = path if path is not None else search_path()
    name = ""
    origin: Path | None = None
    for part in module.split("."):
        if locations is None:  # the parent is a plain module, not a package
            return None
        name = f"{name}.{part}" if name else part
        spec = PathFinder.find_spec(name, locations)
        if spec is None and name == part and path is None:  # an installed package a meta-path finder knows (editable)
            spec = importlib.util.find_spec(name)  # a top-level name: nothing is imported to find it
        if spec is None:
            return None
        locations = list(spec.submodule_search_locations) if spec.submodule_search_locations is not None else None
        origin = Path(spec.origin) if spec.origin and spec.has_location else Path(locations[0]) if locations else None
    return origin


def importable_problem(ref: str) -> str | None:
    """Why the job could not find ``ref``'s module from here, or None when its file is found."""
    module, _ = split_ref(ref)
    if module.split(".")[0] in sys.builtin_module_names:
        return None
    if module_file(module) is None:
        return (
            f"cannot find module {module!r} of {ref!r} in {os.getcwd()} or on PYTHONPATH; "
            "submit from its directory or add that directory to PYTHONPATH"
        )
    return None
