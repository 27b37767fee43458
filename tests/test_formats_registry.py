"""A throwaway input format, registered by the test in a plugin module (``CLUSTERDECK_PLUGINS``): ``clusterdeck
inspect`` detects and reports it, and a shard run lists it in the local executor's worker, as they do the
built-in formats. Nothing but the registry knows it."""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from clusterdeck.jobs.formats import registry
from tests.conftest import run_cli

PLUGIN = "throwaway_marked_format"
NAME = "marked"
SOURCE = '''
"""A directory holding a MARKED file and <class>_<n>.png images."""

from pathlib import Path

from clusterdeck.jobs.formats import registry
from clusterdeck.jobs.formats.base import Fields, InputFormat
from clusterdeck.jobs.shard.sources import Entries, FileSource


class Marked(InputFormat):
    name = "marked"
    looks_like = "a MARKED file"
    path_kind = "dir"

    def detect(self, path: Path) -> bool:
        return path.is_dir() and (path / "MARKED").is_file()

    def entries(self, path: Path, fields: Fields, cache: Path | None = None) -> Entries:
        files = sorted(p.name for p in path.glob("*.png"))
        entries = Entries(FileSource(str(path)), [], [], [], sorted({f.split("_")[0] for f in files}))
        for f in files:
            entries.add(f, f, f.split("_")[0])
        return entries


registry.register(Marked())
'''
CLASSES = ("aaa", "bbb")
PER_CLASS = 3


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The plugin module on the path of this process and of the ones it starts; unregistered afterwards."""
    modules = tmp_path / "plugins"
    modules.mkdir()
    (modules / f"{PLUGIN}.py").write_text(SOURCE)
    path = os.pathsep.join(p for p in (str(modules), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, "CLUSTERDECK_PLUGINS": PLUGIN}
    monkeypatch.syspath_prepend(str(modules))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        yield env
    finally:
        registry.unregister(NAME)
        assert NAME not in registry.names()


def marked_dir(root: Path) -> Path:
    root.mkdir()
    (root / "MARKED").write_text("")
    for c, wnid in enumerate(CLASSES):
        for k in range(PER_CLASS):
            Image.new("RGB", (20 + k, 16), (40 * c, 10 * k, 90)).save(root / f"{wnid}_{k}.png")
    return root


def test_a_registered_format_is_inspected_and_sharded(plugin: dict[str, str], tmp_path: Path, home: Path) -> None:
    data = marked_dir(tmp_path / "data")
    fmt = registry.find(data)
    assert fmt is not None and fmt.name == NAME  # tried before imagefolder and the rest
    assert NAME in registry.shard_names()  # the spec and the form take it

    report = json.loads(run_cli("inspect", str(data), "--json").out)
    assert (report["format"], report["images"], report["classes"]["count"]) == (NAME, 6, 2)
    assert report["image_sizes"]["width"] == {"min": 20, "median": 21, "max": 22}
    text = run_cli("inspect", str(data))
    assert text.code == 0 and f"format    {NAME}" in text.out, text.err
    refused = run_cli("inspect", str(data), "--synsets", str(data / "MARKED"))
    assert refused.code == 2 and "--synsets: only read by" in refused.err

    out = tmp_path / "shards"
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "marked"\n[cluster]\nexecutor = "local"\n[shard]\noutput = "{out}"\nworkers = 1\n'
        f'[shard.train]\ninput = "{data}"\nformat = "{NAME}"\n'
    )
    submitted = run_cli("submit", str(spec), "--wait", "--json", timeout=300)
    assert submitted.code == 0, submitted.err
    run_id = json.loads(submitted.out)["run_id"]
    shown = json.loads(run_cli("show", run_id, "--json").out)
    assert shown["state"] == "COMPLETED" and shown["steps"][0]["state"] == "COMPLETED"

    index = json.loads((out / "index.json").read_text())
    assert index["classes"] == list(CLASSES)
    assert index["settings"]["train"]["format"] == NAME
    assert (index["splits"]["train"]["samples"], index["splits"]["train"]["skipped"]) == (6, [])
    stored = set()
    for shard in index["splits"]["train"]["shards"]:
        with tarfile.open(out / shard["file"]) as tar:
            for member in (m for m in tar if m.name.endswith(".json")):
                extracted = tar.extractfile(member)
                assert extracted is not None
                stored.add(json.load(extracted)["path"])
    assert stored == {f"{wnid}_{k}.png" for wnid in CLASSES for k in range(PER_CLASS)}


def test_without_the_plugin_the_format_is_unknown(tmp_path: Path, home: Path) -> None:
    data = marked_dir(tmp_path / "data")
    env = {"CLUSTERDECK_PLUGINS": ""}
    assert NAME not in registry.names()
    result = run_cli("inspect", str(data), env=env)
    assert result.code == 2 and "not a layout inspect knows" in result.err
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "x"\n[shard]\noutput = "{tmp_path / "o"}"\n[shard.train]\ninput = "{data}"\nformat = "{NAME}"\n'
    )
    result = run_cli("submit", str(spec), env=env)
    assert result.code == 2 and "shard.train.format: Input should be 'imagefolder'" in result.err, result.err


def test_a_name_is_registered_once() -> None:
    with pytest.raises(ValueError, match="registered already"):
        registry.register(registry.formats()[-1])
