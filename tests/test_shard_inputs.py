"""Every input shape ImageNet arrives in, sharded: the ILSVRC2012 tars and devkit, npz batches, subsets, pre-resize."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.runspec import validate
from clusterdeck.jobs.sample_data import (
    NpzData,
    SampleData,
    make_npz_batches,
)
from clusterdeck.jobs.shard.devkit import read_devkit
from clusterdeck.jobs.shard.step import run_shard_part
from clusterdeck.jobs.spec import ShardSpec
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> NpzData:
    return make_npz_batches(tmp_path_factory.mktemp("npz"), classes=6, train_per_class=10, val_per_class=4, side=16)


def spec_of(out: Path, **shard: object) -> ShardSpec:
    spec = validate({"name": "t", "shard": {"output": str(out), "shard_size_mb": 0.3, "workers": 2, **shard}}).shard
    assert spec is not None
    return spec


def shard(spec: ShardSpec, part: str = "main") -> dict:
    run_shard_part(spec, part, lambda _: None)
    return json.loads((spec.output / "index.json").read_text())


def tars(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tar"))}


def samples(out: Path, split: str) -> list[dict]:
    return list(wds.WebDataset(sorted(str(p) for p in out.glob(f"{split}-*.tar")), shardshuffle=False))


def test_the_ilsvrc_tars_give_the_same_shards_as_the_extracted_trees(
    sample_data: SampleData, ilsvrc: dict[str, Path], tmp_path: Path
) -> None:
    from_tars = shard(
        spec_of(
            tmp_path / "tars",
            train={"input": str(ilsvrc["train"]), "format": "ilsvrc-train-tar"},
            val={"input": str(ilsvrc["val"]), "format": "ilsvrc-val-tar", "devkit": str(ilsvrc["devkit"])},
        )
    )
    from_dirs = shard(spec_of(tmp_path / "dirs", **sample_data.shard_inputs()))
    assert tars(tmp_path / "tars") == tars(tmp_path / "dirs"), "same samples, same bytes, however they were stored"
    assert from_tars["classes"] == from_dirs["classes"] == sorted(sample_data.wnids)
    assert from_tars["splits"]["train"]["samples"] == 72 and from_tars["splits"]["val"]["samples"] == 24
    # Nothing extracted: the output holds the shards and their records only.
    assert {p.name for p in (tmp_path / "tars").iterdir()} == {*tars(tmp_path / "tars"), "index.json", ".parts"}

    truth = sample_data.ground_truth.read_text().split()
    for s in samples(tmp_path / "tars", "val"):
        name = json.loads(s["json"])["path"]
        wnid = sample_data.wnids[int(truth[int(name[15:23]) - 1]) - 1]
        assert from_tars["classes"][int(s["cls"])] == wnid
        assert s["jpg"] == (sample_data.val / name).read_bytes()


def test_the_devkit_reads_as_torchvision_reads_it(
    sample_data: SampleData, ilsvrc: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from torchvision.datasets import imagenet

    # torchvision checks the archive's md5 against the official download's, which cannot exist here.
    monkeypatch.setattr(imagenet, "_verify_archive", lambda *a: None)
    shutil.copy(ilsvrc["devkit"], tmp_path / "ILSVRC2012_devkit_t12.tar.gz")
    imagenet.parse_devkit_archive(str(tmp_path))
    wnid_to_classes, val_wnids = imagenet.load_meta_file(str(tmp_path))

    ours = read_devkit(ilsvrc["devkit"])
    assert ours.id_to_wnid == sample_data.wnids and set(ours.id_to_wnid) == set(wnid_to_classes)
    assert [ours.id_to_wnid[i - 1] for i in ours.truth] == val_wnids
    with tarfile.open(ilsvrc["devkit"]) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    extracted = read_devkit(tmp_path / "x" / "ILSVRC2012_devkit_t12")
    assert (extracted.id_to_wnid, extracted.truth) == (ours.id_to_wnid, ours.truth)


def test_every_label_and_pixel_of_the_npz_batches_survives(npz: NpzData, tmp_path: Path) -> None:
    out = tmp_path / "s"
    index = shard(
        spec_of(
            out,
            shard_size_mb=0.05,
            train={"input": str(npz.train), "format": "npz", "synsets": str(npz.synsets)},
            val={"input": str(npz.val), "format": "npz", "synsets": str(npz.synsets)},
        )
    )
    classes = sorted(npz.wnids)
    assert index["classes"] == classes and index["encoding"] == {"resize_shorter": None, "jpeg_quality": None}
    assert len(index["splits"]["train"]["shards"]) > 1
    for split, files in (("train", sorted(npz.train.glob("*.npz"))), ("val", [npz.val])):
        source = {f.name: np.load(f) for f in files}
        got = samples(out, split)
        assert len(got) == sum(len(z["labels"]) for z in source.values())
        seen = set()
        for s in got:
            name = json.loads(s["json"])["path"]
            file, row = name.split("#")
            seen.add(name)
            planes = source[file]["data"][int(row)].reshape(3, 16, 16)
            assert "jpg" not in s and s["png"].startswith(b"\x89PNG")
            pixels = np.asarray(Image.open(io.BytesIO(s["png"])))
            assert pixels.shape == (16, 16, 3)
            assert np.array_equal(pixels[..., 0], planes[0]) and np.array_equal(pixels.transpose(2, 0, 1), planes)
            wnid = npz.wnids[int(source[file]["labels"][int(row)]) - 1]
            assert classes[int(s["cls"])] == wnid == json.loads(s["json"])["wnid"]
        assert len(seen) == len(got), "every row exactly once"


def test_npz_without_synsets_names_classes_by_label_and_compressed_batches_give_the_same_shards(
    tmp_path: Path,
) -> None:
    plain = make_npz_batches(tmp_path / "plain", classes=4, train_per_class=6, side=8, seed=3)
    packed = make_npz_batches(tmp_path / "packed", classes=4, train_per_class=6, side=8, seed=3, compressed=True)
    a = shard(spec_of(tmp_path / "a", train={"input": str(plain.train), "format": "npz"}))
    shard(spec_of(tmp_path / "b", train={"input": str(packed.train), "format": "npz"}))
    assert a["classes"] == ["0001", "0002", "0003", "0004"]
    assert tars(tmp_path / "a") == tars(tmp_path / "b")
    labels = np.concatenate([np.load(f)["labels"] for f in sorted(plain.train.glob("*.npz"))])
    assert Counter(int(s["cls"]) for s in samples(tmp_path / "a", "train")) == Counter((labels - 1).tolist())


def test_npz_with_a_jpeg_quality_stores_jpegs(npz: NpzData, tmp_path: Path) -> None:
    index = shard(spec_of(tmp_path / "s", jpeg_quality=95, train={"input": str(npz.train), "format": "npz"}))
    assert index["encoding"]["jpeg_quality"] == 95
    got = samples(tmp_path / "s", "train")
    assert got and all(s["jpg"].startswith(b"\xff\xd8") and "png" not in s for s in got)


def test_a_class_subset_keeps_train_and_val_to_the_same_classes(
    sample_data: SampleData, ilsvrc: dict[str, Path], tmp_path: Path
) -> None:
    inputs = {
        "train": {"input": str(ilsvrc["train"]), "format": "ilsvrc-train-tar"},
        "val": {"input": str(ilsvrc["val"]), "format": "ilsvrc-val-tar", "devkit": str(ilsvrc["devkit"])},
    }
    first = shard(spec_of(tmp_path / "k", classes=3, **inputs))
    assert first["classes"] == sorted(sample_data.wnids)[:3]
    assert first["splits"]["train"]["samples"] == 36 and first["splits"]["train"]["excluded"] == 36
    assert first["splits"]["val"]["samples"] == 12 and first["splits"]["val"]["excluded"] == 12
    assert first["splits"]["val"]["skipped"] == [], "other classes are left out, not counted as bad inputs"
    for split in ("train", "val"):
        got = samples(tmp_path / "k", split)
        assert {json.loads(s["json"])["wnid"] for s in got} == set(first["classes"])
        assert {int(s["cls"]) for s in got} == {0, 1, 2}

    picked = [sorted(sample_data.wnids)[4], sorted(sample_data.wnids)[1]]
    listed = shard(spec_of(tmp_path / "l", classes=picked, **inputs))
    assert listed["classes"] == sorted(picked) and listed["settings"]["classes"] == sorted(picked)

    with pytest.raises(UserError, match=r"shard\.classes: n99999999 is not a class of shard\.train\.input"):
        shard(spec_of(tmp_path / "x", classes=["n99999999"], **inputs))
    with pytest.raises(UserError, match=r"shard\.classes: 7 asked, but shard\.train\.input has 6 classes"):
        shard(spec_of(tmp_path / "y", classes=7, **inputs))


def test_pre_resize_scales_the_shorter_side_and_is_recorded(sample_data: SampleData, tmp_path: Path) -> None:
    index = shard(spec_of(tmp_path / "s", resize_shorter=64, jpeg_quality=85, **sample_data.shard_inputs()))
    assert index["encoding"] == {"resize_shorter": 64, "jpeg_quality": 85}
    assert index["settings"]["resize_shorter"] == 64 and index["settings"]["jpeg_quality"] == 85
    for split in ("train", "val"):
        for s in samples(tmp_path / "s", split):
            meta = json.loads(s["json"])
            root = sample_data.train if split == "train" else sample_data.val
            with Image.open(root / meta["path"]) as original, Image.open(io.BytesIO(s["jpg"])) as stored:
                w, h = original.size
                assert min(stored.size) == 64
                assert abs(max(stored.size) / 64 - max(w, h) / min(w, h)) < 0.05, "aspect ratio kept"
    default = shard(spec_of(tmp_path / "d", **sample_data.shard_inputs()))
    assert "resize_shorter" not in default["settings"], "settings of sets made before pre-resize are unchanged"
    assert default["splits"]["train"]["bytes"] > 3 * index["splits"]["train"]["bytes"]


def test_array_tasks_over_a_tar_redo_only_missing_or_corrupt_shards(
    ilsvrc: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s"
    spec = spec_of(
        out, train={"input": str(ilsvrc["train"]), "format": "ilsvrc-train-tar"}, resources={"array_tasks": 3}
    )
    for task in range(3):
        run_shard_part(spec, f"task-{task}", lambda _: None)
    shard(spec, "merge")
    whole = tmp_path / "whole"
    shard(spec_of(whole, train={"input": str(ilsvrc["train"]), "format": "ilsvrc-train-tar"}))
    assert tars(out) == tars(whole) and len(tars(out)) >= 4

    before = tars(out)
    names = sorted(before)
    corrupt, missing = out / names[0], out / names[-1]
    data = bytearray(corrupt.read_bytes())
    data[700] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    missing.unlink()
    capsys.readouterr()
    for task in range(3):
        run_shard_part(spec, f"task-{task}", lambda _: None)
    log = capsys.readouterr().out.splitlines()
    written = sorted(line.split(":")[0] for line in log if line.endswith("(written)"))
    assert written == sorted([corrupt.name, missing.name])
    assert sum(line.endswith("(verified, kept)") for line in log) == len(names) - 2
    shard(spec, "merge")
    assert tars(out) == before


def test_bad_inputs_are_named_and_nothing_is_written(
    sample_data: SampleData, ilsvrc: dict[str, Path], npz: NpzData, tmp_path: Path
) -> None:
    gz = tmp_path / "train.tar.gz"
    with tarfile.open(gz, "w:gz") as tar:
        tar.add(ilsvrc["train"], arcname="inner.tar")
    with pytest.raises(UserError, match=rf"{gz}: not an uncompressed tar"):
        shard(spec_of(tmp_path / "a", train={"input": str(gz), "format": "ilsvrc-train-tar"}))

    odd = tmp_path / "odd.npz"
    np.savez(odd, data=np.zeros((2, 100), np.uint8), labels=[1, 2])
    with pytest.raises(UserError, match=rf"{odd}: rows of 100 values are not 3·S·S"):
        shard(spec_of(tmp_path / "b", train={"input": str(odd), "format": "npz"}))
    zero = tmp_path / "zero.npz"
    np.savez(zero, data=np.zeros((2, 12), np.uint8), labels=[0, 1])
    with pytest.raises(UserError, match=rf"{zero}: label 0 is outside 1 or more; labels are 1-based"):
        shard(spec_of(tmp_path / "c", train={"input": str(zero), "format": "npz"}))

    broken = tmp_path / "devkit.tar.gz"
    with tarfile.open(broken, "w:gz") as tar:
        tar.add(sample_data.meta_mat, arcname="ILSVRC2012_devkit_t12/data/meta.mat")
    with pytest.raises(UserError, match=r"devkit.tar.gz: no <devkit>/data/ILSVRC2012_validation_ground_truth.txt"):
        shard(
            spec_of(
                tmp_path / "d", val={"input": str(ilsvrc["val"]), "format": "ilsvrc-val-tar", "devkit": str(broken)}
            )
        )
    for name in "abcd":
        assert not (tmp_path / name).exists() or not any((tmp_path / name).glob("*.tar"))


def test_spec_errors_name_the_key(sample_data: SampleData, ilsvrc: dict[str, Path], tmp_path: Path) -> None:
    def spec_file(shard_toml: str) -> Path:
        path = tmp_path / "spec.toml"
        path.write_text(f'name = "x"\n[shard]\noutput = "{tmp_path / "out"}"\n{shard_toml}')
        return path

    val_tar = f'[shard.val]\ninput = "{ilsvrc["val"]}"\nformat = "ilsvrc-val-tar"\n'
    result = run_cli("submit", str(spec_file(val_tar)))
    assert result.code == 2 and "shard.val" in result.err and "needs ground_truth and synsets, or devkit" in result.err
    assert "Traceback" not in result.err

    wrong = f'[shard.train]\ninput = "{sample_data.train}"\ndevkit = "{ilsvrc["devkit"]}"\n'
    result = run_cli("submit", str(spec_file(wrong)))
    assert result.code == 2 and "devkit only apply to the ilsvrc-val formats" in result.err

    result = run_cli("submit", str(spec_file(f'classes = 0\n[shard.train]\ninput = "{sample_data.train}"\n')))
    assert result.code == 2 and "shard.classes" in result.err
    result = run_cli("submit", str(spec_file(f'resize_shorter = 4\n[shard.train]\ninput = "{sample_data.train}"\n')))
    assert result.code == 2 and "shard.resize_shorter" in result.err
    assert not (tmp_path / "out").exists()


def test_the_form_takes_a_class_count_or_a_list() -> None:
    from clusterdeck.jobs.spec_form import form_sections, parse_value

    field = next(f for sec in form_sections() for f in sec.fields if f.key == "shard.classes")
    assert parse_value(field, "100") == 100
    assert parse_value(field, '["n01440764", "n01443537"]') == ["n01440764", "n01443537"]
    formats = next(f for sec in form_sections() for f in sec.fields if f.key == "shard.train.format")
    assert {"ilsvrc-train-tar", "ilsvrc-val-tar", "npz"} <= set(formats.choices)


def test_a_model_trains_on_npz_shards(npz: NpzData, tmp_path: Path) -> None:
    """The lossless PNG samples go through the same loader as JPEGs, train and val."""
    from clusterdeck.jobs.rundir import RunPaths
    from clusterdeck.jobs.train.step import run_train
    from tests.conftest import SMALL_TRAIN

    out = tmp_path / "s"
    synsets = str(npz.synsets)
    shard(
        spec_of(
            out,
            train={"input": str(npz.train), "format": "npz", "synsets": synsets},
            val={"input": str(npz.val), "format": "npz", "synsets": synsets},
        )
    )
    spec = validate({"name": "t", "train": {"train_shards": str(out), **SMALL_TRAIN, "epochs": 1}})
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    run_train(spec, paths, 1, lambda progress: None)
    records = [json.loads(line) for line in paths.metrics.read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert len(epochs) == 1 and epochs[0]["val_samples"] == 24, "every val PNG decoded and scored"
    assert sum(r["kind"] == "train" for r in records) == 60 // 8, "full batches of the 60 train PNGs"


def test_a_shard_written_with_another_encoding_is_not_reused(
    sample_data: SampleData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same samples per shard (max_samples caps it), other encoding: no shard written for the first is kept."""
    out = tmp_path / "s"
    inputs = {"train": sample_data.shard_inputs()["train"], "resources": {"array_tasks": 2}, "max_samples": 8}
    run_shard_part(spec_of(out, resize_shorter=64, **inputs), "task-0", lambda _: None)  # stopped before merge
    capsys.readouterr()
    run_shard_part(spec_of(out, **inputs), "task-0", lambda _: None)
    log = capsys.readouterr().out
    assert "(written)" in log and "verified, kept" not in log
    for s in samples(out, "train"):
        assert s["jpg"] == (sample_data.train / json.loads(s["json"])["path"]).read_bytes()


def test_images_no_larger_than_the_target_keep_their_bytes(sample_data: SampleData, tmp_path: Path) -> None:
    shard(spec_of(tmp_path / "s", resize_shorter=600, train=sample_data.shard_inputs()["train"]))
    got = samples(tmp_path / "s", "train")
    assert len(got) == 72  # every sample image is 200–500 px on its shorter side
    assert all(s["jpg"] == (sample_data.train / json.loads(s["json"])["path"]).read_bytes() for s in got)


def test_long_member_names_and_damaged_tars(sample_data: SampleData, ilsvrc: dict[str, Path], tmp_path: Path) -> None:
    wnid = sorted(sample_data.wnids)[0]
    image = next((sample_data.train / wnid).iterdir()).read_bytes()
    long_name = "x" * 150 + ".JPEG"
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(long_name)
        info.size, info.pax_headers = len(image), {"comment": "é" * 40}
        tar.addfile(info, io.BytesIO(image))
    pax = tmp_path / "pax.tar"
    with tarfile.open(pax, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"{wnid}.tar")
        info.size = len(inner.getvalue())
        tar.addfile(info, io.BytesIO(inner.getvalue()))
    shard(spec_of(tmp_path / "p", train={"input": str(pax), "format": "ilsvrc-train-tar"}))
    (got,) = samples(tmp_path / "p", "train")
    assert got["jpg"] == image and json.loads(got["json"])["path"] == f"{wnid}/{long_name}"

    whole = ilsvrc["train"].read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole[: len(whole) // 2 // 512 * 512])  # at a block boundary: tarfile alone would just stop
    with pytest.raises(UserError, match=rf"{cut}.*: truncated"):
        shard(spec_of(tmp_path / "c", train={"input": str(cut), "format": "ilsvrc-train-tar"}))
    with tarfile.open(ilsvrc["train"]) as tar:
        boundary = tar.getmembers()[2].offset  # where the third class tar's header starts
    cut.write_bytes(whole[:boundary])  # two whole classes and nothing after: tarfile alone would just stop
    with pytest.raises(UserError, match=rf"{cut}: truncated at byte {boundary}"):
        shard(spec_of(tmp_path / "c", train={"input": str(cut), "format": "ilsvrc-train-tar"}))
    garbled = tmp_path / "garbled.tar"
    second_header = whole.index(b"ustar", 1024) - 257  # a header inside the first class tar
    garbled.write_bytes(whole[:second_header] + b"\x07" * 512 + whole[second_header + 512 :])
    with pytest.raises(UserError, match=r"damaged at byte"):
        shard(spec_of(tmp_path / "g", train={"input": str(garbled), "format": "ilsvrc-train-tar"}))

    binary = tmp_path / "truth.bin"
    binary.write_bytes(bytes(range(256)))
    val = {"input": str(sample_data.val), "format": "ilsvrc-val", "ground_truth": str(binary)}
    with pytest.raises(UserError, match=rf"{binary}: not a text file"):
        shard(spec_of(tmp_path / "b", val={**val, "synsets": str(sample_data.synsets)}))
    with pytest.raises(UserError, match=r"reads the \.tar file itself; .* is a directory"):
        spec_of(tmp_path / "d", train={"input": str(sample_data.train), "format": "ilsvrc-train-tar"})
