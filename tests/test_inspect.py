"""``clusterdeck inspect`` on real inputs and shard sets made by the generators and the shard step.

Every expectation is computed here from the files themselves (stat, PIL, tarfile, numpy),
not from the code under test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path
from statistics import median_low
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clusterdeck.app.cli import main
from clusterdeck.jobs.runspec import validate
from clusterdeck.jobs.sample_data import (
    NpzData,
    SampleData,
    make_npz_batches,
)
from clusterdeck.jobs.shard.step import run_shard_part
from tests.conftest import REPO, run_cli


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> NpzData:
    return make_npz_batches(tmp_path_factory.mktemp("npz"), classes=6, train_per_class=10, side=16, batches=3)


@pytest.fixture(scope="module")
def shard_set(sample_data: SampleData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "set"
    table = {"output": str(out), "shard_size_mb": 0.3, "seed": 0, "workers": 1, **sample_data.shard_inputs()}
    spec = validate({"name": "t", "shard": table}).shard
    assert spec is not None
    run_shard_part(spec, "main", lambda _: None)
    return out


def inspect_json(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["inspect", *args, "--json"]) == code
    return json.loads(capsys.readouterr().out)


def inspect_text(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> tuple[str, str]:
    capsys.readouterr()
    assert main(["inspect", *args]) == code
    captured = capsys.readouterr()
    return captured.out, captured.err


def fields(text: str) -> dict[str, str]:
    """``key  value`` lines of the text report (keys may hold one space: ``per class``)."""
    found = {}
    for line in text.splitlines():
        if line[:9].strip() and len(line) > 10 and line[9] == " ":
            found[line[:9].strip()] = line[10:]
    return found


def image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def sizes_of(files: list[Path]) -> list[tuple[int, int]]:
    out = []
    for f in files:
        with Image.open(f) as image:
            out.append(image.size)
    return out


def test_imagefolder_counts_classes_bytes_and_sizes(sample_data: SampleData, capsys) -> None:
    files = image_files(sample_data.train)
    per_class = Counter(f.parent.name for f in files)
    report = inspect_json(capsys, str(sample_data.train))
    assert report["format"] == "imagefolder" and report["ok"] is True
    assert report["images"] == len(files) == 72
    assert report["bytes"] == sum(f.stat().st_size for f in files)
    classes = report["classes"]
    assert classes["count"] == len(per_class) == 6
    assert classes["first"] == sorted(per_class)[:5]
    assert classes["per_class_min"] == min(per_class.values()) and classes["per_class_max"] == max(per_class.values())
    sizes = report["image_sizes"]
    assert sizes["measured"] == 64 and sizes["unreadable"] == 0  # a sample, not every image
    widths, heights = zip(*sizes_of(files), strict=True)
    assert min(widths) <= sizes["width"]["min"] <= sizes["width"]["median"] <= sizes["width"]["max"] <= max(widths)
    assert min(heights) <= sizes["height"]["min"] <= sizes["height"]["max"] <= max(heights)
    assert report["skipped"] == {"count": 0, "first": None}


def test_the_text_report_shows_the_json_figures(sample_data: SampleData, capsys) -> None:
    report = inspect_json(capsys, str(sample_data.train))
    text, _ = inspect_text(capsys, str(sample_data.train))
    shown = fields(text)
    assert shown["format"] == "imagefolder"
    assert shown["images"] == str(report["images"])
    assert shown["bytes"].split()[0] == str(report["bytes"])
    assert shown["classes"].startswith(f"{report['classes']['count']}: {', '.join(report['classes']['first'])}")
    c = report["classes"]
    assert shown["per class"] == f"{c['per_class_min']} to {c['per_class_max']} images"
    w, h = report["image_sizes"]["width"], report["image_sizes"]["height"]
    assert shown["sizes"].startswith(f"{w['min']}×{h['min']} / {w['median']}×{h['median']} / {w['max']}×{h['max']}")
    assert shown["skipped"] == "0"


def test_flat_val_without_labels_counts_and_says_classes_need_a_devkit(sample_data: SampleData, capsys) -> None:
    files = image_files(sample_data.val)
    report = inspect_json(capsys, str(sample_data.val))
    assert report["format"] == "ilsvrc-val"
    assert report["images"] == len(files) == 24
    assert report["bytes"] == sum(f.stat().st_size for f in files)
    assert report["classes"] is None and "--devkit" in report["classes_note"]
    widths, heights = zip(*sizes_of(files), strict=True)  # 24 images: every one is measured
    assert report["image_sizes"]["measured"] == 24
    assert report["image_sizes"]["width"] == {"min": min(widths), "median": median_low(widths), "max": max(widths)}
    assert report["image_sizes"]["height"] == {"min": min(heights), "median": median_low(heights), "max": max(heights)}
    text, _ = inspect_text(capsys, str(sample_data.val))
    assert "--devkit" in fields(text)["classes"]


def test_flat_val_with_ground_truth_and_synsets(sample_data: SampleData, capsys) -> None:
    truth = Counter(sample_data.ground_truth.read_text().split())
    report = inspect_json(
        capsys,
        str(sample_data.val),
        "--ground-truth",
        str(sample_data.ground_truth),
        "--synsets",
        str(sample_data.synsets),
    )
    assert report["classes"]["count"] == len(sample_data.wnids) == 6
    assert report["classes"]["first"] == sorted(sample_data.wnids)[:5]
    assert report["classes"]["per_class_min"] == min(truth.values()) == 4
    assert report["classes"]["per_class_max"] == max(truth.values())


def test_train_tar_is_a_tar_of_class_tars(sample_data: SampleData, ilsvrc: dict[str, Path], capsys) -> None:
    files = image_files(sample_data.train)
    report = inspect_json(capsys, str(ilsvrc["train"]))
    assert report["format"] == "ilsvrc-train-tar"
    assert report["images"] == len(files)
    assert report["bytes"] == sum(f.stat().st_size for f in files)  # the member sizes: the image files' sizes
    assert report["classes"]["count"] == 6 and report["classes"]["per_class_min"] == 12
    assert report["image_sizes"]["measured"] == 64 and report["image_sizes"]["unreadable"] == 0


def test_val_tar_with_and_without_the_devkit(sample_data: SampleData, ilsvrc: dict[str, Path], capsys) -> None:
    files = image_files(sample_data.val)
    bare = inspect_json(capsys, str(ilsvrc["val"]))
    assert bare["format"] == "ilsvrc-val-tar"
    assert bare["images"] == 24 and bare["bytes"] == sum(f.stat().st_size for f in files)
    assert bare["classes"] is None and "--devkit" in bare["classes_note"]
    labelled = inspect_json(capsys, str(ilsvrc["val"]), "--devkit", str(ilsvrc["devkit"]))
    assert labelled["classes"]["count"] == 6
    assert labelled["classes"]["per_class_min"] == labelled["classes"]["per_class_max"] == 4
    assert labelled["images"] == bare["images"] and labelled["bytes"] == bare["bytes"]


def test_a_tar_named_otherwise_is_read_with_format(ilsvrc: dict[str, Path], tmp_path: Path, capsys) -> None:
    renamed = tmp_path / "val.bin"
    shutil.copy(ilsvrc["val"], renamed)
    result = run_cli("inspect", str(renamed))
    assert result.code == 2 and str(renamed) in result.err and "--format" in result.err
    assert inspect_json(capsys, str(renamed), "--format", "ilsvrc-val-tar")["images"] == 24


def npz_expectations(files: list[Path]) -> tuple[int, int, Counter[int]]:
    rows, side, labels = 0, 0, Counter[int]()
    for f in files:
        with np.load(f) as z:
            data = z["data"]
            rows += data.shape[0]
            side = round((data.shape[1] / 3) ** 0.5)
            labels.update(int(k) for k in z["labels"])
    return rows, side, labels


def test_npz_batches_directory_and_file(npz: NpzData, capsys) -> None:
    files = sorted(npz.train.glob("*.npz"))
    rows, side, labels = npz_expectations(files)
    report = inspect_json(capsys, str(npz.train))
    assert report["format"] == "npz"
    assert report["npz"] == {"batches": 3, "side": side, "file_bytes": sum(f.stat().st_size for f in files)}
    assert report["images"] == rows == 60
    assert report["bytes"] == rows * 3 * side * side
    assert report["classes"]["count"] == len(labels) == 6
    assert report["classes"]["first"] == [f"{k:04d}" for k in sorted(labels)][:5]
    assert report["classes"]["per_class_min"] == min(labels.values())
    assert report["image_sizes"]["width"] == {"min": side, "median": side, "max": side}

    named = inspect_json(capsys, str(npz.val), "--synsets", str(npz.synsets))
    assert named["npz"]["batches"] == 1 and named["images"] == npz_expectations([npz.val])[0]
    assert named["classes"]["first"] == sorted(npz.wnids)[:5]


def test_compressed_npz_is_not_inflated_anywhere(tmp_path: Path) -> None:
    data = make_npz_batches(tmp_path / "npz", classes=4, train_per_class=5, side=8, batches=2, compressed=True)
    before = sorted(p.name for p in data.train.iterdir())
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = run_cli("inspect", str(data.train), "--json", env={"TMPDIR": str(scratch)})
    assert result.code == 0, result.err
    report = json.loads(result.out)
    rows, side, _ = npz_expectations(sorted(data.train.glob("*.npz")))
    assert report["images"] == rows == 20 and report["bytes"] == rows * 3 * side * side
    assert sorted(p.name for p in data.train.iterdir()) == before
    assert list(scratch.iterdir()) == []


def shard_expectations(root: Path, split: str) -> tuple[int, int, int]:
    """(shards, samples, bytes) of a split, from its tar files."""
    files = sorted(root.glob(f"{split}-*.tar"))
    samples = 0
    for f in files:
        with tarfile.open(f) as tar:
            samples += sum(1 for m in tar if m.name.endswith(".cls"))
    return len(files), samples, sum(f.stat().st_size for f in files)


def test_shard_set_counts_classes_sizes_and_verified_checksums(
    shard_set: Path, sample_data: SampleData, capsys
) -> None:
    report = inspect_json(capsys, str(shard_set))
    assert report["format"] == "shards" and report["index_format"] == "clusterdeck-shards/1"
    assert report["ok"] is True
    assert report["classes"] == {"count": 6, "first": sorted(sample_data.wnids)[:5]}
    assert report["encoding"] == {"resize_shorter": None, "jpeg_quality": None}
    assert set(report["splits"]) == {"train", "val"}
    for split, expected_samples in (("train", 72), ("val", 24)):
        shards, samples, size = shard_expectations(shard_set, split)
        entry = report["splits"][split]
        assert (entry["shards"], entry["samples"], entry["bytes"]) == (shards, samples, size)
        assert samples == expected_samples
        assert entry["skipped"] == {"count": 0, "first": None} and entry["excluded"] == 0
    val_sizes = sizes_of(image_files(sample_data.val))  # 24 val images: all of them are measured
    measured = report["splits"]["val"]["image_sizes"]
    assert measured["measured"] == 24
    assert measured["width"]["max"] == max(w for w, _ in val_sizes)
    assert measured["height"]["min"] == min(h for _, h in val_sizes)
    assert report["splits"]["train"]["image_sizes"]["measured"] == 64
    total = len(list(shard_set.glob("*.tar")))
    assert report["verify"] == {"sha256": False, "checksum": "xxh3_128", "shards": total, "ok": total, "problems": []}
    crypto = inspect_json(capsys, str(shard_set), "--sha256")["verify"]
    assert (crypto["sha256"], crypto["checksum"], crypto["ok"]) == (True, "sha256", total)


def test_shard_set_text_shows_the_json_figures(shard_set: Path, capsys) -> None:
    report = inspect_json(capsys, str(shard_set))
    text, err = inspect_text(capsys, str(shard_set))
    assert err == ""
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.split()[:1] in (["train"], ["val"])}
    for split, entry in report["splits"].items():
        samples, shards, size = rows[split][1:4]
        assert (int(samples), int(shards), int(size)) == (entry["samples"], entry["shards"], entry["bytes"])
    total = report["verify"]["shards"]
    assert fields(text)["verify"].startswith(f"{total} of {total} shards match the index")


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))  # the same size: only the checksum can tell


def test_a_corrupt_and_a_missing_shard_are_named_with_exit_1(shard_set: Path, tmp_path: Path, capsys) -> None:
    damaged = tmp_path / "set"
    shutil.copytree(shard_set, damaged)
    corrupt(damaged / "train-000001.tar")
    report = inspect_json(capsys, str(damaged), code=1)
    assert report["ok"] is False
    assert report["verify"]["problems"] == [
        {"split": "train", "file": "train-000001.tar", "problem": "xxh3_128 differs from the index"}
    ]
    crypto = inspect_json(capsys, str(damaged), "--sha256", code=1)  # the cryptographic check finds it too
    assert crypto["verify"]["problems"][0]["problem"] == "sha256 differs from the index"
    (damaged / "val-000000.tar").unlink()
    text, err = inspect_text(capsys, str(damaged), code=1)
    assert "train-000001.tar" in text and "val-000000.tar" in text
    assert f"{damaged / 'train-000001.tar'}: xxh3_128 differs" in err
    assert f"{damaged / 'val-000000.tar'}: missing" in err


def test_shards_are_checked_by_several_threads_and_progress_reaches_the_total(shard_set: Path, tmp_path: Path) -> None:
    """Every shard is read once, several at a time; the bytes told to the progress bar add up to the indexed
    total even when a shard is missing or cut short (a bar that stops short would look stuck)."""
    import threading

    from clusterdeck.jobs.shard.inspect import inspect_path

    damaged = tmp_path / "set"
    shutil.copytree(shard_set, damaged)
    (damaged / "train-000002.tar").unlink()
    with open(damaged / "val-000001.tar", "r+b") as f:
        f.truncate(1000)
    index = json.loads((damaged / "index.json").read_text())
    total = sum(s["bytes"] for e in index["splits"].values() for s in e["shards"])
    told: list[tuple[int, int]] = []
    readers: set[str] = set()

    def progress(n: int, of: int) -> None:
        told.append((n, of))
        readers.add(threading.current_thread().name)

    report = inspect_path(damaged, progress=progress)
    assert {of for _, of in told} == {total} and sum(n for n, _ in told) == total
    assert len(readers) > 1 and all(name.startswith("inspect") for name in readers), readers
    problems = {p["file"]: p["problem"] for p in report["verify"]["problems"]}
    val_bytes = {s["file"]: s["bytes"] for s in index["splits"]["val"]["shards"]}
    assert problems == {
        "train-000002.tar": "missing",
        "val-000001.tar": f"1000 bytes, the index says {val_bytes['val-000001.tar']}",
    }


def test_no_verify_checks_sizes_but_not_checksums(shard_set: Path, tmp_path: Path, capsys) -> None:
    damaged = tmp_path / "set"
    shutil.copytree(shard_set, damaged)
    corrupt(damaged / "train-000000.tar")
    report = inspect_json(capsys, str(damaged), "--no-verify")
    assert report["ok"] is True and report["verify"]["sha256"] is False and report["verify"]["problems"] == []
    with open(damaged / "val-000000.tar", "ab") as f:
        f.write(b"\0" * 512)  # a size the index does not give is found without hashing
    report = inspect_json(capsys, str(damaged), "--no-verify", code=1)
    [problem] = report["verify"]["problems"]
    assert problem["file"] == "val-000000.tar" and "bytes, the index says" in problem["problem"]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("train", "imagefolder"),
        ("val", "ilsvrc-val"),
        ("train.tar", "ilsvrc-train-tar"),
        ("val.tar", "ilsvrc-val-tar"),
        ("npz-dir", "npz"),
        ("npz-file", "npz"),
        ("shards", "shards"),
    ],
)
def test_each_format_is_detected(
    target: str, expected: str, sample_data: SampleData, ilsvrc, npz: NpzData, shard_set: Path, capsys
) -> None:
    paths = {
        "train": sample_data.train,
        "val": sample_data.val,
        "train.tar": ilsvrc["train"],
        "val.tar": ilsvrc["val"],
        "npz-dir": npz.train,
        "npz-file": npz.val,
        "shards": shard_set,
    }
    text, _ = inspect_text(capsys, str(paths[target]), "--no-verify")
    assert fields(text)["format"].split()[0] == expected


def test_bad_inputs_exit_2_naming_the_path(sample_data: SampleData, ilsvrc, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("not a dataset\n")
    bad_index = tmp_path / "bad-index"
    bad_index.mkdir()
    (bad_index / "index.json").write_text('{"format": "something else"}')
    cases = [
        ([str(tmp_path / "nowhere")], tmp_path / "nowhere"),
        ([str(empty)], empty),
        ([str(notes)], notes),
        ([str(ilsvrc["devkit"])], ilsvrc["devkit"]),  # a .tar.gz
        ([str(sample_data.root)], sample_data.root),  # a dataset root: train/ and val/
        ([str(bad_index)], bad_index / "index.json"),
        ([str(ilsvrc["val"]), "--devkit", str(notes)], notes),
        ([str(sample_data.val), "--ground-truth", str(sample_data.ground_truth)], "--synsets"),
        ([str(ilsvrc["val"]), "--synsets", str(sample_data.synsets)], "--ground-truth"),
        ([str(ilsvrc["train"]), "--devkit", str(ilsvrc["devkit"])], ilsvrc["train"]),
        ([str(notes), "--format", "ilsvrc-val-tar"], notes),
        ([str(sample_data.train), "--format", "shards"], sample_data.train),
    ]
    for args, named in cases:
        result = run_cli("inspect", *args)
        assert result.code == 2, (args, result)
        assert str(named) in result.err, (args, result.err)
        assert "Traceback" not in result.err and result.out == ""


def test_inspect_imports_no_torch_torchvision_or_webdataset(shard_set: Path, ilsvrc, npz: NpzData) -> None:
    runs = [
        [str(shard_set)],
        [str(ilsvrc["train"])],
        [str(ilsvrc["val"]), "--devkit", str(ilsvrc["devkit"])],
        [str(npz.train)],
    ]
    script = f"""
import contextlib, io, sys
from clusterdeck.app.cli import main
for args in {runs!r}:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["inspect", *args]) == 0, args
heavy = sorted(m for m in ("torch", "torchvision", "webdataset") if m in sys.modules)
assert not heavy, heavy
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
