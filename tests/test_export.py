"""``clusterdeck export`` on real files: values read back against the source, .mtd files against their
files, the size target, bad input, and memory that stays bounded under a hard limit."""

from __future__ import annotations

import io
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.export.encode import level_text
from clusterdeck.jobs.export.images import fit_image
from clusterdeck.jobs.runspec import load_spec
from clusterdeck.jobs.sample_data import SampleData
from clusterdeck.jobs.shard.step import run_shard_part
from clusterdeck.jobs.train.shardread import read_shard
from clusterdeck.jobs.train.shardset import read_shardset
from tests.conftest import REPO, run_cli

SIDE = 16
CLASSES = 7


def make_npz(root: Path, rows: list[int], side: int = SIDE, classes: int = CLASSES, seed: int = 0) -> np.ndarray:
    """Batches of random rows (so that every image is unique) with 1-based labels; returns every row's
    pixels as N × S × S × 3 (HWC) and writes the labels beside them in ``labels.npy``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    pixels, labels = [], []
    for k, n in enumerate(rows, start=1):
        data = rng.integers(0, 256, (n, 3 * side * side), dtype=np.uint8)
        label = rng.integers(1, classes + 1, n)
        label[:classes] = np.arange(1, classes + 1)  # every class appears: the one-hot width is `classes`
        np.savez(root / f"train_data_batch_{k}.npz", data=data, labels=label)
        pixels.append(data.reshape(n, 3, side, side).transpose(0, 2, 3, 1))
        labels.append(label)
    np.save(root.parent / f"{root.name}-labels.npy", np.concatenate(labels))
    return np.concatenate(pixels)


def read_matrix(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", ndmin=2)


def check_mtd(csv: Path) -> dict[str, object]:
    """The .mtd beside ``csv`` describes it: rows, columns on every line, non-zeros, SystemDS's keys.
    Read a line at a time: some of these files are larger than the test should hold."""
    meta = json.loads(csv.with_name(csv.name + ".mtd").read_text())
    assert meta["data_type"] == "matrix" and meta["value_type"] == "double"
    assert meta["format"] == "csv" and meta["header"] is False and meta["sep"] == ","
    rows = nnz = 0
    with open(csv, "rb") as f:
        for line in f:
            values = np.array(line.split(b","), dtype=np.float64)  # a header or a stray text fails here
            assert len(values) == meta["cols"], (csv, rows)
            nnz += int(np.count_nonzero(values))
            rows += 1
    assert (meta["rows"], meta["nnz"]) == (rows, nnz), csv
    return meta


def outputs(out: Path, tag: str, name: str = "imagenet", ext: str = "csv") -> dict[str, Path]:
    return {part: out / f"{name}_{part}_{tag}.{ext}" for part in ("train", "train_labels", "val", "val_labels")}


def source_index(pixels: np.ndarray) -> dict[bytes, int]:
    index = {p.tobytes(): i for i, p in enumerate(pixels)}
    assert len(index) == len(pixels)
    return index


def rows_as_images(values: np.ndarray, side: int, layout: str) -> np.ndarray:
    """CSV rows back to uint8 N × S × S × 3, undoing the documented flattening."""
    levels = np.rint(values * 255).astype(np.uint8)
    if layout == "chw":
        return levels.reshape(-1, 3, side, side).transpose(0, 2, 3, 1)
    return levels.reshape(-1, side, side, 3)


@pytest.mark.parametrize("layout", ["chw", "hwc"])
def test_npz_rows_read_back_as_the_source_pixels_and_labels(tmp_path: Path, layout: str) -> None:
    pixels = make_npz(tmp_path / "npz", [150, 90])
    labels = np.load(tmp_path / "npz-labels.npy")
    out = tmp_path / "out"
    r = run_cli("export", str(tmp_path / "npz"), "--out", str(out), "--samples", "200", "--image-size", str(SIDE),
                "--layout", layout, "--seed", "3")  # fmt: skip
    assert r.code == 0, r.err
    files = outputs(out, "200samples")
    index = source_index(pixels)
    seen: list[int] = []
    for split, rows in (("train", 160), ("val", 40)):
        values = read_matrix(files[split])
        one_hot = read_matrix(files[f"{split}_labels"])
        assert values.shape == (rows, 3 * SIDE * SIDE) and one_hot.shape == (rows, CLASSES)
        assert values.min() >= 0 and values.max() <= 1
        assert np.abs(values - np.rint(values * 255) / 255).max() <= 0.5e-6  # k / 255 to 6 decimals
        images = rows_as_images(values, SIDE, layout)
        sources = [index[image.tobytes()] for image in images]  # KeyError: a row that is no source image
        first = pixels[sources[0]]
        if layout == "chw":  # the whole red plane, row by row, then green
            assert np.array_equal(np.rint(values[0, : SIDE * SIDE] * 255), first[:, :, 0].reshape(-1))
            assert np.array_equal(np.rint(values[0, SIDE * SIDE : SIDE * SIDE + SIDE] * 255), first[0, :, 1])
        else:  # r, g, b of the top-left pixel, then of its right neighbour
            assert np.array_equal(np.rint(values[0, :6] * 255), first[0, :2].reshape(-1))
        assert set(np.unique(one_hot)) == {0.0, 1.0} and (one_hot.sum(axis=1) == 1).all()
        assert np.array_equal(one_hot.argmax(axis=1), labels[sources] - 1)  # 0-indexed
        seen += sources
        for part in (split, f"{split}_labels"):
            check_mtd(files[part])
    assert len(set(seen)) == 200  # no sample twice, train and val apart
    assert seen[:10] != sorted(seen[:10])  # shuffled, not in file order
    manifest = json.loads((out / "imagenet_200samples.export.json").read_text())
    assert manifest["train"] == 160 and manifest["val"] == 40 and manifest["layout"] == layout
    assert manifest["classes"] == CLASSES and len(manifest["class_names"]) == CLASSES


def test_the_same_seed_writes_the_same_files_and_another_seed_others(tmp_path: Path) -> None:
    make_npz(tmp_path / "npz", [120])
    args = ["export", str(tmp_path / "npz"), "--samples", "50", "--image-size", str(SIDE)]
    for out, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert run_cli(*args, "--out", str(tmp_path / out), "--seed", seed).code == 0
    a, b, c = (outputs(tmp_path / o, "50samples")["train"].read_bytes() for o in "abc")
    assert a == b and a != c


def test_images_are_resized_squashed_or_cropped(tmp_path: Path) -> None:
    pixels = make_npz(tmp_path / "npz", [40], side=32)
    out = tmp_path / "out"
    r = run_cli("export", str(tmp_path / "npz"), "--out", str(out), "--samples", "40", "--image-size", "8",
                "--val-fraction", "0", "--layout", "hwc")  # fmt: skip
    assert r.code == 0, r.err
    files = outputs(out, "40samples")
    assert not files["val"].exists()
    values = read_matrix(files["train"])
    assert values.shape == (40, 8 * 8 * 3)
    expected = {
        np.asarray(Image.fromarray(p).resize((8, 8), Image.Resampling.BOX)).tobytes(): i for i, p in enumerate(pixels)
    }
    images = rows_as_images(values, 8, "hwc")
    assert all(image.tobytes() in expected for image in images)  # a 4× box average of a source image
    check_mtd(files["train"])


def test_a_shard_set_exports_its_pixels_exactly(tmp_path: Path) -> None:
    """npz rows sharded losslessly (PNG) by the real shard step, then exported: every value is a source pixel."""
    pixels = make_npz(tmp_path / "npz", [60, 40])
    labels = np.load(tmp_path / "npz-labels.npy")
    spec_file = tmp_path / "shard.toml"
    spec_file.write_text(f"""
name = "s"
[shard]
output = "{tmp_path / "shards"}"
shard_size_mb = 0.05
workers = 2
[shard.train]
input = "{tmp_path / "npz"}"
format = "npz"
""")
    spec = load_spec(spec_file)
    assert spec.shard is not None
    run_shard_part(spec.shard, "main", lambda progress: None)
    assert len(read_shardset(tmp_path / "shards", "").splits["train"]) > 3
    out = tmp_path / "out"
    r = run_cli("export", str(tmp_path / "shards"), "--out", str(out), "--samples", "90", "--image-size", str(SIDE),
                "--workers", "2", "--name", "tiny")  # fmt: skip
    assert r.code == 0, r.err
    files = outputs(out, "90samples", name="tiny")
    index = source_index(pixels)
    classes = read_shardset(tmp_path / "shards", "").classes  # label-number names, in number order
    seen = []
    for split in ("train", "val"):
        images = rows_as_images(read_matrix(files[split]), SIDE, "chw")
        one_hot = read_matrix(files[f"{split}_labels"])
        sources = [index[image.tobytes()] for image in images]
        assert [classes[k] for k in one_hot.argmax(axis=1)] == [f"{label:04d}" for label in labels[sources]]
        seen += sources
        check_mtd(files[split])
        check_mtd(files[f"{split}_labels"])
    assert len(set(seen)) == 90


def test_jpeg_shards_are_decoded_and_fitted_like_pil(sample_shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = run_cli("export", str(sample_shards), "--out", str(out), "--samples", "40", "--image-size", "24",
                "--fit", "crop", "--layout", "hwc", "--workers", "2")  # fmt: skip
    assert r.code == 0, r.err
    references: dict[str, tuple[np.ndarray, int]] = {}
    for shard in read_shardset(sample_shards, "").splits["train"]:
        for sample in read_shard(shard):
            with Image.open(io.BytesIO(sample["jpg"])) as image:  # full-size decode, no draft
                rgb = image.convert("RGB")
            side = min(rgb.size)
            left, top = (rgb.size[0] - side) // 2, (rgb.size[1] - side) // 2
            ref = rgb.resize((24, 24), Image.Resampling.BOX, box=(left, top, left + side, top + side))
            references[sample["__key__"]] = (np.asarray(ref, dtype=np.float64), int(sample["cls"]))
    keys = list(references)
    stack = np.stack([references[k][0] for k in keys])
    files = outputs(out, "40samples")
    matched, differences = [], []
    for split in ("train", "val"):
        images = rows_as_images(read_matrix(files[split]), 24, "hwc").astype(np.float64)
        one_hot = read_matrix(files[f"{split}_labels"])
        for image, label in zip(images, one_hot.argmax(axis=1), strict=True):
            errors = np.abs(stack - image).mean(axis=(1, 2, 3))
            best = int(errors.argmin())
            # reduced-scale decoding, and the centre square found in its coordinates: a few levels off
            assert errors[best] < 5, errors[best]
            assert references[keys[best]][1] == label
            matched.append(best)
            differences.append(errors[best])
        check_mtd(files[split])
    assert len(set(matched)) == 40
    assert np.mean(differences) < 2.5  # other images are 30 levels or more away


def test_a_size_target_becomes_a_sample_count_reported_before_writing(tmp_path: Path) -> None:
    make_npz(tmp_path / "npz", [400])
    out = tmp_path / "out"
    r = run_cli("export", str(tmp_path / "npz"), "--out", str(out), "--size-gb", "0.001", "--image-size", str(SIDE))
    assert r.code == 0, r.err
    planned = re.search(r"GB target ÷ ([\d,]+) bytes a sample \(measured on \d+\) = ([\d,]+) samples", r.out)
    assert planned is not None, r.out
    assert planned.end() < r.out.index("wrote")  # said before the files are written
    samples = int(planned.group(2).replace(",", ""))
    files = outputs(out, "0.001GB")
    total = sum(p.stat().st_size for p in files.values())
    assert abs(total - 1e6) < 0.05e6, total  # within 5 % of the target
    rows = [check_mtd(files[s])["rows"] for s in ("train", "val")]
    assert sum(rows) == samples  # type: ignore[arg-type]


def test_npy_holds_the_same_values_as_csv(tmp_path: Path) -> None:
    make_npz(tmp_path / "npz", [80])
    common = ["export", str(tmp_path / "npz"), "--samples", "30", "--image-size", str(SIDE)]
    assert run_cli(*common, "--out", str(tmp_path / "csv")).code == 0
    r = run_cli(*common, "--out", str(tmp_path / "npy"), "--format", "npy")
    assert r.code == 0, r.err
    csv, npy = outputs(tmp_path / "csv", "30samples"), outputs(tmp_path / "npy", "30samples", ext="npy")
    for part in csv:
        array = np.load(npy[part])
        assert array.dtype == (np.float32 if part in ("train", "val") else np.uint8)
        assert np.allclose(array, read_matrix(csv[part]), atol=1e-6)
    assert not list((tmp_path / "npy").glob("*.mtd"))


def test_inspect_shows_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    make_npz(tmp_path / "npz", [100])
    out = tmp_path / "out"
    args = ["export", str(tmp_path / "npz"), "--out", str(out), "--samples", "25", "--image-size", str(SIDE)]
    r = run_cli(*args, "--inspect", "--json")
    assert r.code == 0, r.err
    assert not out.exists()
    plan = json.loads(r.out)
    assert (plan["pool"], plan["train"], plan["val"], plan["columns"], plan["classes"]) == (100, 20, 5, 768, CLASSES)
    assert run_cli(*args).code == 0
    for f in plan["files"]:
        meta = check_mtd(out / f["name"])
        assert (meta["rows"], meta["cols"]) == (f["rows"], f["cols"])


def test_bad_input_is_named_and_nothing_is_replaced(tmp_path: Path) -> None:
    make_npz(tmp_path / "npz", [50])
    out = tmp_path / "out"
    base = ["export", str(tmp_path / "npz"), "--out", str(out)]
    assert run_cli(*base, "--samples", "20", "--image-size", str(SIDE)).code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    cases = {
        ("--samples", "20"): "already exists",  # same files again, without --overwrite
        ("--samples", "51"): "--samples: 51 asked for, but",
        ("--size-gb", "5"): "--size-gb: 5 GB takes about",
        ("--samples", "3", "--val-fraction", "0.1"): "--val-fraction: 0.1 of 3 samples leaves 3 train and 0 val",
        ("--samples", "9", "--layout", "whc"): "--layout: Input should be 'chw' or 'hwc'",
        ("--samples", "9", "--val-fraction", "1"): "--val-fraction: Input should be less than 1",
        ("--samples", "9", "--num-classes", "3"): f"--num-classes: 3, but {tmp_path / 'npz'} has {CLASSES} classes",
        ("--samples", "9", "--name", "../x"): "--name: String should match pattern",
        ("--samples", "9", "--split", "val"): "--split:",
        ("--samples", "0"): "--samples: Input should be greater than or equal to 1",
        ("--samples", "5", "--size-gb", "1"): "not allowed with argument",
        ("--val-fraction", "0.5",): "one of the arguments --size-gb --samples is required",
    }  # fmt: skip
    for extra, text in cases.items():
        r = run_cli(*base, *extra)
        assert r.code == 2 and text in r.err, (extra, r.err)
        assert "Traceback" not in r.err
    r = run_cli("export", str(tmp_path / "nowhere"), "--out", str(out), "--samples", "5")
    assert r.code == 2 and f"INPUT: path does not exist: {tmp_path / 'nowhere'}" in r.err, r.err
    r = run_cli("--host", "somewhere", "export", str(tmp_path / "npz"), "--out", str(out), "--samples", "5")
    assert r.code == 2 and "run it on the cluster itself" in r.err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_failure_midway_leaves_the_earlier_files_whole(sample_shards: Path, tmp_path: Path) -> None:
    """A shard whose images stop decoding (same size, damaged bytes): the export fails naming the sample,
    removes its temporary files, and the files of an earlier export with the same names are untouched."""
    shards = tmp_path / "shards"
    shutil.copytree(sample_shards, shards)
    out = tmp_path / "out"
    args = ["export", str(shards), "--out", str(out), "--samples", "60", "--image-size", "16", "--workers", "2"]
    assert run_cli(*args).code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for shard in read_shardset(shards, "").splits["train"]:
        data = bytearray(shard.path.read_bytes())
        start = data.find(b"\xff\xd8\xff")
        while start != -1:  # every JPEG's header garbled, the tar (and its size) intact
            data[start + 2 : start + 40] = bytes(38)
            start = data.find(b"\xff\xd8\xff", start + 40)
        shard.path.write_bytes(bytes(data))
    r = run_cli(*args, "--overwrite")
    assert r.code == 2, r.err
    assert "cannot decode the image" in r.err and "of shard" in r.err and "Traceback" not in r.err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporary file left either


def test_memory_stays_bounded_when_the_export_is_larger_than_the_limit(tmp_path: Path) -> None:
    """4,000 rows of 64×64×3 become 0.44 GB of CSV, in a process whose data segment may not exceed 250 MiB:
    only a streaming writer fits. The same limit stops a process that holds the matrix (375 MiB of doubles)."""
    limit = 250 << 20
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "big.npz", data=rng.integers(0, 256, (4000, 12288), dtype=np.uint8),
             labels=rng.integers(1, 1001, 4000))  # fmt: skip
    out = tmp_path / "out"

    def limited(code: str) -> tuple[int, int, str]:
        """Exit code, resident peak (VmHWM: this process image's own, not the forked test's) and stderr."""
        code += "\nprint(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')), file=sys.stderr)"
        proc = subprocess.run(
            [sys.executable, "-c", "import sys\n" + code],
            cwd=REPO,
            capture_output=True,
            text=True,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_DATA, (limit, limit)),
        )
        peak = re.search(r"VmHWM:\s+(\d+) kB", proc.stderr)
        return proc.returncode, int(peak.group(1)) * 1024 if peak else -1, proc.stderr

    def export(*argv: str) -> tuple[int, int, str]:
        return limited(f"from clusterdeck.app.cli import main\nrc = main({['export', *argv]!r})\nassert rc == 0, rc")

    code, peak, err = export(str(tmp_path / "big.npz"), "--out", str(out), "--samples", "4000")
    assert code == 0, err
    written = sum(p.stat().st_size for p in out.glob("*.csv"))
    assert written > 1.6 * limit  # the export is larger than the limit ...
    assert 0 < peak < limit  # ... and its resident peak stays below it
    meta = check_mtd(out / "imagenet_train_4000samples.csv")
    assert meta["rows"] == 3200 and meta["cols"] == 12288
    code, peak, err = export(str(tmp_path / "big.npz"), "--out", str(tmp_path / "large"), "--samples", "200",
                             "--image-size", "256")  # fmt: skip
    assert code == 0, err  # large images: fewer of them to a chunk, so the bound holds at any size
    assert sum(p.stat().st_size for p in (tmp_path / "large").glob("*.csv")) > limit and 0 < peak < limit
    code, _, err = limited(f"import numpy as np; np.load({str(tmp_path / 'big.npz')!r})['data'] / 255")
    assert code != 0 and "MemoryError" in err  # the limit bites: the matrix itself does not fit


def test_export_imports_no_torch_or_webdataset(sample_shards: Path, tmp_path: Path) -> None:
    code = (
        "import sys; from clusterdeck.app.cli import main; "
        f"rc = main(['export', {str(sample_shards)!r}, '--out', {str(tmp_path / 'out')!r}, '--samples', '10', "
        "'--workers', '1']); "
        "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'webdataset')))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "0 []", r.stdout + r.stderr


def test_pixel_text_recovers_every_level() -> None:
    for decimals in (3, 6, 12):
        texts = [level_text(k, decimals) for k in range(256)]
        assert [round(float(t) * 255) for t in texts] == list(range(256))
        assert all(abs(float(t) - k / 255) <= 0.5 * 10**-decimals for k, t in enumerate(texts))
    assert (level_text(0, 6), level_text(255, 6), level_text(51, 6)) == ("0", "1", "0.2")


def test_fit_keeps_the_centre_or_the_whole(sample_data: SampleData) -> None:
    path = next(sample_data.train.rglob("*.JPEG"))
    data = path.read_bytes()
    with Image.open(path) as image:
        assert image.size[0] != image.size[1]
    squash, crop = fit_image(data, 20, "squash"), fit_image(data, 20, "crop")
    assert squash.shape == crop.shape == (20, 20, 3) and squash.dtype == np.uint8
    assert np.abs(squash.astype(int) - crop.astype(int)).mean() > 1  # different parts of the image


def test_an_export_section_names_its_keys(tmp_path: Path, home: Path) -> None:
    make_npz(tmp_path / "npz", [20])
    spec = tmp_path / "spec.toml"
    spec.write_text(f'name = "x"\n[export]\nout = "{tmp_path / "out"}"\nsize_gb = 1\nsamples = 5\n')
    r = run_cli("submit", str(spec))
    assert r.code == 2 and "export: give size_gb or samples, not both" in r.err, r.err
    spec.write_text(f'name = "x"\n[export]\nout = "{tmp_path / "out"}"\nsamples = 5\n')
    r = run_cli("submit", str(spec))
    assert r.code == 2 and "export.input: required when the spec has no [shard] section" in r.err, r.err
    spec.write_text(f'name = "x"\n[export]\ninput = "{tmp_path / "npz"}"\nout = "{tmp_path / "out"}"\nsamples = 50\n')
    r = run_cli("submit", str(spec))
    assert r.code == 2 and "export.samples: 50 asked for, but" in r.err, r.err  # checked before any job starts


def decoders(pid: int) -> list[Any]:
    """The decoding worker processes of the export running as ``pid`` (not multiprocessing's resource tracker)."""
    import psutil

    return [c for c in psutil.Process(pid).children() if "spawn_main" in " ".join(c.cmdline())]


def test_a_killed_export_leaves_no_workers_and_the_next_one_clears_its_files(
    sample_shards: Path, tmp_path: Path
) -> None:
    import psutil

    out = tmp_path / "out"
    args = [sys.executable, "-m", "clusterdeck.app.cli", "export", str(sample_shards), "--out", str(out),
            "--samples", "70", "--image-size", "512", "--workers", "2"]  # fmt: skip
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while not list(out.glob(".*.part-*")) or len(decoders(proc.pid)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "the export ended before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGSTOP)  # from here the export cannot end, however fast it is
        # each worker has decoded a chunk and is putting it on its queue (wchar counts the pipe's first write)
        while not all(w.io_counters().write_chars > 0 for w in decoders(proc.pid)):
            assert time.monotonic() < deadline, "the decoding workers never sent a result"
            time.sleep(0.05)
        workers = psutil.Process(proc.pid).children()
        proc.send_signal(sig)
        proc.send_signal(signal.SIGCONT)  # the SIGTERM is handled from here; a SIGKILL needed no waking
        assert proc.wait(30) == (130 if sig == signal.SIGTERM else -signal.SIGKILL)
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read().decode()
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive  # the workers noticed their reader was gone (SIGKILL) or were stopped (SIGTERM)
        left = list(out.glob(".*.part-*"))
        assert bool(left) == (sig == signal.SIGKILL)  # only a SIGKILL can leave temporary files
    r = run_cli("export", str(sample_shards), "--out", str(out), "--samples", "5", "--image-size", "512",
                "--workers", "1")  # fmt: skip
    assert r.code == 0, r.err
    assert not list(out.glob(".*.part-*"))  # the killed export's files, from a pid that is gone, removed


def test_a_full_disk_fails_cleanly_and_keeps_the_earlier_files(tmp_path: Path) -> None:
    make_npz(tmp_path / "npz", [100])
    out = tmp_path / "out"
    args = ["-m", "clusterdeck.app.cli", "export", str(tmp_path / "npz"), "--out", str(out), "--samples", "60"]
    assert subprocess.run([sys.executable, *args, "--image-size", "8"], cwd=REPO).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.run(
        [sys.executable, *args, "--image-size", "8", "--overwrite", "--decimals", "17"],
        cwd=REPO,
        capture_output=True,
        text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000)),  # a file may not grow past
    )
    assert proc.returncode == 1, proc.stderr
    assert "File too large while writing; nothing was replaced" in proc.stderr and ".part-" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_more_bad_input(tmp_path: Path, home: Path) -> None:
    make_npz(tmp_path / "npz", [30])
    out = tmp_path / "out"
    r = run_cli("export", str(tmp_path / "npz"), "--out", str(out), "--size-gb", "inf")
    assert r.code == 2 and "--size-gb: Input should be a finite number" in r.err, r.err
    r = run_cli("export", str(tmp_path / "npz"), "--out", str(out), "--samples", "5", "--workers", "many")
    assert r.code == 2 and "--workers: a number of decoding processes" in r.err, r.err
    # a compressed batch whose data is damaged late in its stream: found when the rows are read
    rng = np.random.default_rng(0)
    np.savez_compressed(tmp_path / "z.npz", data=rng.integers(0, 256, (400, 768), dtype=np.uint8),
                        labels=rng.integers(1, 4, 400))  # fmt: skip
    damaged = bytearray((tmp_path / "z.npz").read_bytes())
    damaged[len(damaged) // 2 : len(damaged) // 2 + 64] = bytes(64)
    (tmp_path / "z.npz").write_bytes(bytes(damaged))
    r = run_cli("export", str(tmp_path / "z.npz"), "--out", str(out), "--samples", "300", "--image-size", "16")
    assert r.code == 2 and f"{tmp_path / 'z.npz'}: its compressed 'data' is damaged" in r.err, r.err
    assert "Traceback" not in r.err and not list(out.glob(".*"))
    # files an export would replace: refused when the run is submitted, before its [shard] step runs
    assert run_cli("export", str(tmp_path / "npz"), "--out", str(out), "--samples", "5", "--image-size", "16").code == 0
    spec = tmp_path / "spec.toml"
    spec.write_text(f"""name = "x"
[shard]
output = "{tmp_path / "shards"}"
[shard.train]
input = "{tmp_path / "npz"}"
format = "npz"
[export]
out = "{out}"
samples = 5
""")
    r = run_cli("submit", str(spec))
    assert r.code == 2 and f"export.out: {out / 'imagenet_train_5samples.csv'} already exists" in r.err, r.err
    r = run_cli("export", str(tmp_path / "npz"), "--out", str(out), "--samples", "5", "--image-size", "16", "--inspect")
    assert r.code == 0 and "samples  5: 4 train + 1 val" in r.out and "warning: --out:" in r.err, r.err
    # replacing an export with one without val files removes the old val files, which its manifest no longer lists
    r = run_cli("export", str(tmp_path / "npz"), "--out", str(out), "--samples", "5", "--image-size", "16",
                "--val-fraction", "0", "--overwrite")  # fmt: skip
    assert r.code == 0, r.err
    assert sorted(p.name for p in out.iterdir()) == [
        "imagenet_5samples.export.json", "imagenet_train_5samples.csv", "imagenet_train_5samples.csv.mtd",
        "imagenet_train_labels_5samples.csv", "imagenet_train_labels_5samples.csv.mtd",
    ]  # fmt: skip


def test_only_this_hosts_dead_exports_are_cleared(tmp_path: Path) -> None:
    from clusterdeck.jobs.export.write import remove_stale

    host = socket.gethostname()
    dead = _a_dead_pid()
    mine = tmp_path / f".imagenet_train_1GB.csv.part-{host}-{dead}"
    other_host = tmp_path / f".imagenet_train_1GB.csv.part-{host}-2-{dead}"  # host "<host>-2", not this one
    live = tmp_path / f".imagenet_train_1GB.csv.part-{host}-{os.getpid()}"
    other_name = tmp_path / f".other_train_1GB.csv.part-{host}-{dead}"
    for path in (mine, other_host, live, other_name):
        path.write_text("x")
    remove_stale(tmp_path, "imagenet")
    assert not mine.exists() and other_host.exists() and live.exists() and other_name.exists()


def _a_dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_resumed_run_does_not_refuse_the_files_its_export_wrote(tmp_path: Path) -> None:
    from clusterdeck.jobs.runspec import validate
    from clusterdeck.jobs.submit import preflight

    make_npz(tmp_path / "npz", [30])
    out = tmp_path / "out"
    table = {"name": "x", "export": {"input": str(tmp_path / "npz"), "out": str(out), "samples": 5}}
    assert run_cli("export", str(tmp_path / "npz"), "--out", str(out), "--samples", "5").code == 0
    spec = validate(table)
    with pytest.raises(UserError, match="already exists"):
        preflight(spec)  # a new run would replace them
    preflight(spec, ["train", "evaluate"])  # resuming the steps after a completed export
