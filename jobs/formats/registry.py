"""The input formats, listed once, in the order ``detect`` tries them; everything that reads an input asks here.

The spec checks ``[shard.<split>]`` inputs against their format, the shard step lists them, ``inspect``
detects and reports them, ``export`` opens them, and the form offers the names: none of them names a format.
A format is added by ``register()``, from a module named in ``CLUSTERDECK_PLUGINS`` (``jobs.plugins``) so
that every process a run starts knows it; the plugins are imported before the list is read.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

from clusterdeck.jobs.formats.base import Fields, InputFormat
from clusterdeck.jobs.plugins import load_plugins

BUILTIN = (
    "clusterdeck.jobs.formats.shards",  # a directory with an index.json is a shard set, whatever else it holds
    "clusterdeck.jobs.formats.ilsvrc_val",
    "clusterdeck.jobs.formats.npz",
    "clusterdeck.jobs.formats.cifar",  # before the tars: its download is a .tar.gz
    "clusterdeck.jobs.formats.hf_parquet",  # before imagefolder: a repository root's data/ is not a class
    "clusterdeck.jobs.formats.ilsvrc_train_tar",
    "clusterdeck.jobs.formats.ilsvrc_val_tar",
    "clusterdeck.jobs.formats.imagefolder_tar",  # a tar of class folders: after the ILSVRC tars
    "clusterdeck.jobs.formats.imagefolder",  # any folders: tried last
)
"""The built-in formats' modules, each with its ``FORMAT``, in detection order. They are imported by name on
the first read, as plugins are: the spec asks this registry, and must not depend on any format's readers
(which reach the export and train code that depends on the spec)."""
DEFAULT = "imagefolder"
"""The format of a ``[shard.<split>]`` input that names none."""


@cache
def _listed() -> list[InputFormat]:
    """The one list, made on first use; ``register`` and ``unregister`` change it in place."""
    return [importlib.import_module(module).FORMAT for module in BUILTIN]


def register(fmt: InputFormat) -> None:
    """Adds ``fmt``, tried before the formats listed already (a plugin's layout is the more specific)."""
    listed = _listed()
    if any(f.name == fmt.name for f in listed):
        raise ValueError(f"an input format named {fmt.name!r} is registered already")
    listed.insert(0, fmt)


def unregister(name: str) -> None:
    """Removes the format ``name`` (a test's throwaway one)."""
    listed = _listed()
    listed[:] = [f for f in listed if f.name != name]


def formats() -> list[InputFormat]:
    """Every format, in detection order."""
    load_plugins()
    return list(_listed())


def get(name: str) -> InputFormat | None:
    return next((f for f in formats() if f.name == name), None)


def names(where: Callable[[InputFormat], bool] = lambda f: True) -> list[str]:
    return [f.name for f in formats() if where(f)]


def shard_names() -> list[str]:
    """What a ``[shard.<split>]`` input's ``format`` may be (the form offers these, the default first)."""
    return sorted(names(lambda f: f.shardable), key=lambda name: name != DEFAULT)


def find(path: Path, where: Callable[[InputFormat], bool] = lambda f: True) -> InputFormat | None:
    """The first format (of those ``where`` keeps) that detects ``path``; None if none does."""
    return next((f for f in formats() if where(f) and f.detect(path)), None)


def unread(fmt: InputFormat, fields: Fields) -> list[str]:
    """The optional keys given that ``fmt`` does not read."""
    return [k for k in fields if k not in fmt.fields]


def readers(keys: Iterable[str]) -> str:
    """The formats that read any of ``keys``, as errors name them (by family where they share one)."""
    wanted = set(keys)
    named = [f.family or f.name for f in formats() if wanted & set(f.fields)]
    return " and ".join(dict.fromkeys(named)) or "no format"
