"""The shard step on real files: shuffle, determinism, labels, resume, skipped inputs, webdataset."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import webdataset as wds

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.runspec import validate
from clusterdeck.jobs.sample_data import SampleData
from clusterdeck.jobs.shard.step import ShardStepFailed, check_output, run_shard_part
from clusterdeck.jobs.spec import ShardSpec


def make_spec(data: SampleData, out: Path, **shard: object) -> ShardSpec:
    table = {
        "output": str(out),
        "shard_size_mb": 0.3,
        "seed": 0,
        "workers": 2,
        **data.shard_inputs(),
        **shard,
    }
    spec = validate({"name": "t", "shard": table}).shard
    assert spec is not None
    return spec


def shard(spec: ShardSpec, part: str = "main") -> list[dict[str, float]]:
    reports: list[dict[str, float]] = []
    run_shard_part(spec, part, reports.append)
    return reports


def index_of(out: Path) -> dict:
    return json.loads((out / "index.json").read_text())


def tars(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tar"))}


def test_shards_are_globally_shuffled_and_readable_by_webdataset(sample_data: SampleData, tmp_path: Path) -> None:
    out = tmp_path / "s"
    shard(make_spec(sample_data, out))
    index = index_of(out)
    assert index["classes"] == sorted(sample_data.wnids)
    train = index["splits"]["train"]
    assert train["samples"] == 72 and len(train["shards"]) >= 4
    first = list(wds.WebDataset(str(out / "train-000000.tar"), shardshuffle=False))
    assert len({int(s["cls"]) for s in first}) >= 3, "shard 0 must already mix classes"

    urls = [str(out / s["file"]) for s in train["shards"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    keys = [s["__key__"] for s in samples]
    assert len(keys) == len(set(keys)) == 72
    labels = Counter(int(s["cls"]) for s in samples)
    assert labels == {c: 12 for c in range(6)}
    for s in samples:
        meta = json.loads(s["json"])
        original = sample_data.train / meta["path"]
        assert s["jpg"] == original.read_bytes(), "original JPEG bytes, not re-encoded"
        assert meta["wnid"] == original.parent.name == index["classes"][int(s["cls"])]
    for entry in train["shards"]:
        assert (out / entry["file"]).stat().st_size == entry["bytes"]


def test_val_labels_use_the_train_class_order(sample_data: SampleData, tmp_path: Path) -> None:
    out = tmp_path / "s"
    shard(
        make_spec(
            sample_data,
            out,
            val={
                "input": str(sample_data.val),
                "format": "ilsvrc-val",
                "ground_truth": str(sample_data.ground_truth),
                "synsets": str(sample_data.meta_mat),
            },
        )
    )
    index = index_of(out)
    truth = sample_data.ground_truth.read_text().split()
    urls = [str(out / s["file"]) for s in index["splits"]["val"]["shards"]]
    seen = 0
    for s in wds.WebDataset(urls, shardshuffle=False):
        meta = json.loads(s["json"])
        number = int(meta["path"][len("ILSVRC2012_val_") : -len(".JPEG")])
        wnid = sample_data.wnids[int(truth[number - 1]) - 1]
        assert index["classes"][int(s["cls"])] == wnid == meta["wnid"]
        seen += 1
    assert seen == 24


def test_same_input_and_seed_give_identical_bytes_whatever_the_workers(sample_data, tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    shard(make_spec(sample_data, a, workers=1))
    shard(make_spec(sample_data, b, workers=2))
    spec_c = make_spec(sample_data, c, resources={"array_tasks": 3})
    for task in range(3):
        shard(spec_c, f"task-{task}")
    shard(spec_c, "merge")
    assert tars(a) == tars(b) == tars(c)
    assert (a / "index.json").read_bytes() == (b / "index.json").read_bytes() == (c / "index.json").read_bytes()
    d = tmp_path / "d"
    shard(make_spec(sample_data, d, seed=1))
    assert tars(a).keys() == tars(d).keys() and tars(a) != tars(d)


def test_resume_keeps_verified_shards_and_rewrites_corrupt_ones(sample_data, tmp_path: Path, capsys) -> None:
    out = tmp_path / "s"
    spec = make_spec(sample_data, out)
    shard(spec)
    before = tars(out)
    victim = out / "train-000001.tar"
    data = bytearray(victim.read_bytes())
    data[1000] ^= 0xFF  # same size, different content: only the checksum can tell
    victim.write_bytes(bytes(data))
    (out / "train-000002.tar").unlink()
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    capsys.readouterr()
    shard(spec)
    log = capsys.readouterr().out
    assert "train-000001.tar: " in log and "train-000001.tar" in [
        line.split(":")[0] for line in log.splitlines() if line.endswith("(written)")
    ]
    assert "train-000000.tar" in [line.split(":")[0] for line in log.splitlines() if "verified, kept" in line]
    assert tars(out) == before
    assert (out / "train-000000.tar").stat().st_mtime_ns == mtimes["train-000000.tar"]


def test_non_images_are_skipped_listed_and_counted(sample_data, tmp_path: Path) -> None:
    data_root = tmp_path / "data"
    shutil.copytree(sample_data.root, data_root)
    train = data_root / "train"
    wnid = sorted(sample_data.wnids)[0]
    (train / wnid / "notes.txt").write_text("not an image")
    (train / wnid / "empty.JPEG").write_bytes(b"")
    copy = SampleData(data_root, sample_data.wnids)
    out = tmp_path / "s"
    with pytest.raises(ShardStepFailed, match=r"train: 2 of 74 inputs skipped"):
        shard(make_spec(copy, out))
    index = index_of(out)  # written anyway, so the user can see what was skipped
    skipped = {s["path"]: s["reason"] for s in index["splits"]["train"]["skipped"]}
    assert skipped == {f"{wnid}/empty.JPEG": "empty file", f"{wnid}/notes.txt": "not an image (unknown file header)"}
    assert index["splits"]["train"]["samples"] == 72

    out2 = tmp_path / "s2"
    shard(make_spec(copy, out2, max_skipped_fraction=0.05))
    assert index_of(out2)["splits"]["train"]["samples"] == 72


def test_an_output_made_with_other_settings_is_refused(sample_data, tmp_path: Path) -> None:
    out = tmp_path / "s"
    shard(make_spec(sample_data, out))
    before = tars(out)
    check_output(make_spec(sample_data, out, workers=1))  # same content settings: fine to resume into
    with pytest.raises(UserError, match=r"shard.output: .* other settings \(seed differ\)"):
        check_output(make_spec(sample_data, out, seed=5))
    with pytest.raises(UserError, match=r"overlaps shard\.train\.input"):
        check_output(make_spec(sample_data, sample_data.train / "x"))
    assert tars(out) == before
