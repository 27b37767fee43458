"""CIFAR-10 / CIFAR-100 python batches, from the extracted folder and the downloaded .tar.gz, as the generator writes
them in the originals' format: every pixel and label sharded, both label sets, subsets, bad batches, inspect, export,
and one run through the real CLI."""

from __future__ import annotations

import gzip
import io
import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from clusterdeck.jobs.runspec import validate
from clusterdeck.jobs.sample_cifar import CifarData, make_cifar
from clusterdeck.jobs.shard.step import run_shard_part
from clusterdeck.jobs.spec import ShardSpec
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def c10(tmp_path_factory: pytest.TempPathFactory) -> CifarData:
    return make_cifar(tmp_path_factory.mktemp("c10"), classes=10, per_class=12, test_per_class=4)


@pytest.fixture(scope="module")
def c100(tmp_path_factory: pytest.TempPathFactory) -> CifarData:
    return make_cifar(tmp_path_factory.mktemp("c100"), classes=100, per_class=2, test_per_class=1)


def spec_of(out: Path, **shard: object) -> ShardSpec:
    table = {"name": "t", "shard": {"output": str(out), "shard_size_mb": 0.03, "workers": 2, **shard}}
    spec = validate(table).shard
    assert spec is not None
    return spec


def shard(spec: ShardSpec) -> dict:
    run_shard_part(spec, "main", lambda _: None)
    return json.loads((spec.output / "index.json").read_text())


def tars(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tar"))}


def samples(out: Path, split: str, shards: str = "*") -> list[dict]:
    return list(wds.WebDataset(sorted(str(p) for p in out.glob(f"{split}-{shards}.tar")), shardshuffle=False))


def batches(data: CifarData, split: str) -> dict[str, dict[bytes, object]]:
    """The split's batches as Python reads the originals (stdlib pickle, byte strings): the reference."""
    loaded = {}
    for path in data.batch_files(split):
        with open(path, "rb") as f:
            loaded[path.name] = pickle.load(f, encoding="bytes")
    return loaded


def assert_every_row_once(out: Path, split: str, source: dict[str, dict], key: bytes, classes: list[str]) -> None:
    got = samples(out, split)
    assert len(got) == sum(len(b[key]) for b in source.values())  # type: ignore[arg-type]
    seen = set()
    for s in got:
        name = json.loads(s["json"])["path"]
        file, row = name.split("#")
        seen.add(name)
        assert s["png"].startswith(b"\x89PNG") and "jpg" not in s
        pixels = np.asarray(Image.open(io.BytesIO(s["png"])))
        planes = source[file][b"data"][int(row)].reshape(3, 32, 32)  # type: ignore[index]
        assert pixels.shape == (32, 32, 3) and np.array_equal(pixels.transpose(2, 0, 1), planes)
        assert int(s["cls"]) == source[file][key][int(row)]  # type: ignore[index]  # CIFAR's own label
        assert classes[int(s["cls"])] == json.loads(s["json"])["wnid"]
    assert len(seen) == len(got), "every row exactly once"


def test_every_pixel_and_label_survives_and_the_download_gives_the_same_shards(c10: CifarData, tmp_path: Path) -> None:
    runs = {}
    for kind, inp in (("folder", c10.folder), ("archive", c10.archive)):
        runs[kind] = shard(
            spec_of(
                tmp_path / kind,
                train={"input": str(inp), "format": "cifar"},
                val={"input": str(inp), "format": "cifar", "split": "test"},
            )
        )
    assert tars(tmp_path / "folder") == tars(tmp_path / "archive"), "the same rows, the same bytes"
    index = runs["archive"]
    assert index["classes"] == c10.names  # label order: a shard's label is CIFAR's
    assert index["splits"]["train"]["samples"] == 120 and index["splits"]["val"]["samples"] == 40
    assert len(index["splits"]["train"]["shards"]) > 3
    assert_every_row_once(tmp_path / "archive", "train", batches(c10, "train"), b"labels", c10.names)
    assert_every_row_once(tmp_path / "archive", "val", batches(c10, "test"), b"labels", c10.names)
    first = samples(tmp_path / "archive", "train", "000000")
    assert len({s["cls"] for s in first}) > 1, "shard 0 mixes classes"
    assert len({json.loads(s["json"])["path"].split("#")[0] for s in first}) > 1, "and batches"


def test_cifar100_reads_the_fine_or_the_coarse_labels(c100: CifarData, tmp_path: Path) -> None:
    fine = shard(spec_of(tmp_path / "fine", train={"input": str(c100.archive), "format": "cifar"}))
    assert fine["classes"] == c100.names and len(fine["classes"]) == 100
    assert_every_row_once(tmp_path / "fine", "train", batches(c100, "train"), b"fine_labels", c100.names)
    inp = {"input": str(c100.folder), "format": "cifar", "labels": "coarse"}
    coarse = shard(spec_of(tmp_path / "coarse", train=inp, val={**inp, "split": "test"}))
    assert coarse["classes"] == c100.coarse_names and len(coarse["classes"]) == 20
    assert_every_row_once(tmp_path / "coarse", "train", batches(c100, "train"), b"coarse_labels", c100.coarse_names)
    assert_every_row_once(tmp_path / "coarse", "val", batches(c100, "test"), b"coarse_labels", c100.coarse_names)


def test_a_class_count_keeps_the_first_labels(c10: CifarData, tmp_path: Path) -> None:
    inp = {"input": str(c10.archive), "format": "cifar"}
    index = shard(spec_of(tmp_path / "s", classes=3, train=inp, val={**inp, "split": "test"}))
    assert index["classes"] == c10.names[:3]
    assert index["splits"]["train"]["samples"] == 36 and index["splits"]["train"]["excluded"] == 84
    assert index["splits"]["val"]["samples"] == 12
    assert Counter(int(s["cls"]) for s in samples(tmp_path / "s", "train")) == {0: 12, 1: 12, 2: 12}


def test_torchvision_reads_the_generated_batches_as_it_reads_the_download(
    c10: CifarData, c100: CifarData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision import datasets

    # torchvision checks each file's md5 against the real download's, which cannot exist here.
    monkeypatch.setattr(datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    ten = datasets.CIFAR10(str(c10.root), train=True)
    hundred = datasets.CIFAR100(str(c100.root), train=False)
    assert ten.classes == c10.names and hundred.classes == c100.names
    index = shard(spec_of(tmp_path / "s", train={"input": str(c10.root), "format": "cifar"}))  # torchvision's root
    for s in samples(tmp_path / "s", "train")[:20]:
        file, row = json.loads(s["json"])["path"].split("#")
        k = (int(file.rsplit("_", 1)[1]) - 1) * 24 + int(row)  # 24 rows in each of the 5 batches
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(s["png"]))), ten.data[k])
        assert index["classes"][int(s["cls"])] == ten.classes[ten.targets[k]]


def test_inspect_reports_a_split_and_a_label_set(c10: CifarData, c100: CifarData) -> None:
    r = run_cli("inspect", str(c100.archive), "--split", "test", "--labels", "coarse", "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert (report["format"], report["images"], report["bytes"]) == ("cifar", 100, 100 * 3072)
    assert report["classes"]["count"] == 20 and report["classes"]["per_class_min"] == 5
    assert report["image_sizes"]["width"]["max"] == report["image_sizes"]["height"]["min"] == 32
    assert report["cifar"] == {"dataset": "CIFAR-100", "split": "test", "labels": "coarse", "batches": ["test"]}
    text = run_cli("inspect", str(c10.folder))
    assert text.code == 0 and "images    120" in text.out and "CIFAR-10, train split: data_batch_1" in text.out
    refused = run_cli("inspect", str(c10.archive), "--labels", "coarse")
    assert refused.code == 2 and "labels = 'coarse'" in refused.err and "CIFAR-10" in refused.err


def test_export_writes_the_test_rows_exactly(c10: CifarData, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = run_cli("export", str(c10.archive), "--out", str(out), "--samples", "40", "--split", "val",
                "--image-size", "32", "--format", "npy", "--seed", "1")  # fmt: skip
    assert r.code == 0, r.err
    source = batches(c10, "test")["test_batch"]
    index = {row.tobytes(): k for k, row in enumerate(source[b"data"])}  # type: ignore[attr-defined]
    seen = []
    for split in ("train", "val"):
        rows = np.load(out / f"imagenet_{split}_40samples.npy")
        labels = np.load(out / f"imagenet_{split}_labels_40samples.npy").argmax(axis=1)
        for values, label in zip(rows, labels, strict=True):
            k = index[np.rint(values * 255).astype(np.uint8).tobytes()]  # chw rows: CIFAR's own layout
            assert label == source[b"labels"][k]  # type: ignore[index]
            seen.append(k)
    assert sorted(seen) == list(range(40)) and not list(out.glob("*.inflated*"))


def cifar_spec(path: Path, out: Path, inp: Path, extra: str = "") -> Path:
    path.write_text(
        f'name = "cifar"\n[cluster]\nexecutor = "local"\n[shard]\noutput = "{out}"\nshard_size_mb = 0.05\n'
        f'workers = 2\n[shard.train]\ninput = "{inp}"\nformat = "cifar"\n{extra}'
    )
    return path


def test_a_run_through_the_cli_shards_the_download(c10: CifarData, tmp_path: Path, home: Path) -> None:
    out = tmp_path / "shards"
    val = f'[shard.val]\ninput = "{c10.archive}"\nformat = "cifar"\nsplit = "test"\n'
    spec = cifar_spec(tmp_path / "spec.toml", out, c10.archive, val)
    result = run_cli("submit", str(spec), "--wait", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["state"] == "COMPLETED"
    index = json.loads((out / "index.json").read_text())
    assert index["classes"] == c10.names
    assert (index["splits"]["train"]["samples"], index["splits"]["val"]["samples"]) == (120, 40)


def _rewrite(data: CifarData, root: Path, name: str, change: object) -> Path:
    """A copy of the folder whose batch ``name`` is ``change(batch)`` pickled, or the bytes ``change`` gives."""
    import shutil

    folder = root / data.folder.name
    shutil.copytree(data.folder, folder)
    with open(folder / name, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    content = change(batch)  # type: ignore[operator]
    (folder / name).write_bytes(content if isinstance(content, bytes) else pickle.dumps(content, protocol=2))
    return folder


class Runs:
    """Unpickling this runs code: what a restricted loader must refuse, never do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (Path(self.marker),))


def test_bad_batches_stop_the_submit_naming_the_file_or_key(c10: CifarData, tmp_path: Path, home: Path) -> None:
    marker = tmp_path / "ran"
    cases = {
        "rows": (lambda b: {**b, b"data": b[b"data"][:, :3000].copy()}, "data_batch_2", "rows of 3000 values"),
        "labels": (lambda b: {**b, b"labels": [10] * len(b[b"labels"])}, "data_batch_3", "label 10 is outside"),
        "foreign": (lambda b: {b"data": Runs(str(marker))}, "data_batch_1", "not a CIFAR pickle"),
        "not a dict": (lambda b: [1, 2, 3], "test_batch", "a pickled list, not a CIFAR batch"),
    }
    for label, (change, name, says) in cases.items():
        folder = _rewrite(c10, tmp_path / label, name, change)
        val = f'[shard.val]\ninput = "{folder}"\nformat = "cifar"\nsplit = "test"\n'
        r = run_cli("submit", str(cifar_spec(tmp_path / label / "spec.toml", tmp_path / label / "o", folder, val)))
        assert r.code == 2, (label, r.out, r.err)
        assert f"{folder / name}: " in r.err and says in r.err and "Traceback" not in r.err, label
        assert not (tmp_path / label / "o").exists(), label
    assert not marker.exists(), "the foreign pickle's code never ran"

    coarse = cifar_spec(tmp_path / "coarse.toml", tmp_path / "o", c10.archive, 'labels = "coarse"\n')
    r = run_cli("submit", str(coarse))
    assert r.code == 2 and "shard.train" in r.err and "labels = 'coarse'" in r.err and "CIFAR-10" in r.err
    other = cifar_spec(tmp_path / "split.toml", tmp_path / "o", c10.folder, 'split = "validation"\n')
    r = run_cli("submit", str(other))
    assert r.code == 2 and "split = 'validation'" in r.err

    whole = c10.archive.read_bytes()
    for kept in (len(whole) // 2, len(whole) - 8):  # half, and all but gzip's trailer (every member whole)
        cut = tmp_path / f"cut{kept}" / c10.archive.name
        cut.parent.mkdir()
        cut.write_bytes(whole[:kept])
        r = run_cli("submit", str(cifar_spec(cut.parent / "spec.toml", tmp_path / "o", cut)))
        assert r.code == 2 and f"{cut}: truncated or damaged archive" in r.err, r.err
    assert gzip.decompress(whole)  # the whole one reads


def test_array_tasks_share_one_copy_of_the_batches_and_give_the_same_shards(c10: CifarData, tmp_path: Path) -> None:
    inp = {"input": str(c10.archive), "format": "cifar"}
    one = spec_of(tmp_path / "one", train=inp)
    run_shard_part(one, "main", lambda _: None)
    spread = spec_of(tmp_path / "spread", train=inp, resources={"array_tasks": 2})
    for part in ("task-1", "task-0", "merge"):
        run_shard_part(spread, part, lambda _: None)
    assert tars(tmp_path / "one") == tars(tmp_path / "spread")
    cache = tmp_path / "spread" / ".sources" / "train"
    (folder,) = cache.iterdir()  # one copy, no temporary folder left
    assert sorted(p.name for p in folder.iterdir()) == [*(f"data_batch_{k}.npy" for k in range(1, 6)), "listing.json"]
