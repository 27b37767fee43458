"""``clusterdeck val-sort``: the flat val set as <wnid>/ class folders, linked or copied, on real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterdeck.jobs.sample_data import SampleData
from clusterdeck.jobs.shard.valsort import sort_val
from tests.conftest import Result, needs_root, run_cli


@pytest.fixture
def data(sample_data: SampleData, tmp_path: Path) -> SampleData:
    """A private copy of the sample val set and devkit files (the tests add files and check inodes)."""
    root = tmp_path / "data"
    shutil.copytree(sample_data.root, root, ignore=lambda d, names: ["train"] if Path(d) == sample_data.root else [])
    return SampleData(root, sample_data.wnids)


def expected_tree(data: SampleData) -> dict[str, str]:
    """File name → wnid, read here from the ground truth without the project's readers."""
    ids = [int(line) for line in data.ground_truth.read_text().split()]
    return {
        name: data.wnids[ids[int(name[len("ILSVRC2012_val_") : -len(".JPEG")]) - 1] - 1]
        for name in os.listdir(data.val)
    }


def tree(out: Path) -> dict[str, str]:
    return {f.name: f.parent.name for f in out.glob("*/*")}


def val_sort_args(data: SampleData, out: Path) -> list[str]:
    return [str(data.val), "--ground-truth", str(data.ground_truth), "--synsets", str(data.synsets), "--out", str(out)]


def val_sort(data: SampleData, out: Path, *extra: str) -> Result:
    return run_cli("val-sort", *val_sort_args(data, out), *extra)


def test_every_image_lands_in_its_ground_truth_class_as_a_hard_link(data: SampleData, tmp_path: Path) -> None:
    out = tmp_path / "sorted"
    result = val_sort(data, out)
    assert result.code == 0, result.err
    expected = expected_tree(data)
    assert len(expected) == 24 and tree(out) == expected
    for name, wnid in expected.items():
        assert os.path.samefile(out / wnid / name, data.val / name)
    classes = len(set(expected.values()))
    assert (
        result.out.strip()
        == f"sorted 24 images into {classes} class folders under {out} (24 linked, 0 copied, 0 already there)"
    )


def test_synsets_from_meta_mat_sort_the_same_as_the_text_file(data: SampleData, tmp_path: Path) -> None:
    from_txt = sort_val(data.val, data.ground_truth, data.synsets, tmp_path / "txt")
    from_mat = sort_val(data.val, data.ground_truth, data.meta_mat, tmp_path / "mat")
    assert from_mat.record() | {"out": ""} == from_txt.record() | {"out": ""}
    assert tree(tmp_path / "mat") == tree(tmp_path / "txt") == expected_tree(data)


def test_a_rerun_changes_nothing_and_counts_what_is_already_there(data: SampleData, tmp_path: Path) -> None:
    out = tmp_path / "sorted"
    assert val_sort(data, out).code == 0
    # one destination replaced by a copy with the same bytes: also "already there", left as it is
    name, wnid = sorted(expected_tree(data).items())[0]
    (out / wnid / name).unlink()
    shutil.copy2(data.val / name, out / wnid / name)
    before = {p: os.stat(p).st_ino for p in out.glob("*/*")}

    again = val_sort(data, out, "--json")
    assert again.code == 0, again.err
    record = json.loads(again.out)
    assert (record["images"], record["linked"], record["copied"], record["already_there"]) == (24, 0, 0, 24)
    assert record["skipped"] == 0 and record["classes"] == len(set(expected_tree(data).values()))
    assert {p: os.stat(p).st_ino for p in out.glob("*/*")} == before
    assert not os.path.samefile(out / wnid / name, data.val / name)


def test_a_conflicting_destination_stops_everything_before_any_link(data: SampleData, tmp_path: Path) -> None:
    out = tmp_path / "sorted"
    name, wnid = sorted(expected_tree(data).items())[-1]
    conflict = out / wnid / name
    conflict.parent.mkdir(parents=True)
    conflict.write_bytes(b"not this image")
    val_before = sorted(os.listdir(data.val))

    result = val_sort(data, out)
    assert result.code == 2
    assert str(conflict) in result.err and "Traceback" not in result.err
    assert sorted(out.rglob("*")) == [conflict.parent, conflict]
    assert conflict.read_bytes() == b"not this image"
    assert sorted(os.listdir(data.val)) == val_before


def test_across_filesystems_the_images_are_copied(data: SampleData, tmp_path: Path) -> None:
    """A real second filesystem (a small tmpfs mounted here; the tests run as root): hard links cannot cross it."""
    needs_root("mount, for a second filesystem")
    where = tmp_path / "other-fs"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)], check=True)
    try:
        assert os.stat(where).st_dev != os.stat(data.val).st_dev
        out = where / "sorted"
        result = val_sort(data, out, "--json")
        assert result.code == 0, result.err
        record = json.loads(result.out)
        assert (record["linked"], record["copied"], record["already_there"]) == (0, 24, 0)
        expected = expected_tree(data)
        assert tree(out) == expected
        for name, wnid in expected.items():
            assert (out / wnid / name).read_bytes() == (data.val / name).read_bytes()
            assert not os.path.samefile(out / wnid / name, data.val / name)
        assert not list(out.rglob(".*"))  # no temporary copies left behind
        again = val_sort(data, out, "--json")
        assert json.loads(again.out)["already_there"] == 24
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_files_that_cannot_be_sorted_are_counted_and_named(data: SampleData, tmp_path: Path) -> None:
    (data.val / "README.txt").write_text("hello")
    (data.val / "ILSVRC2012_val_00099999.JPEG").write_bytes(b"beyond the ground truth")
    (data.val / "extra").mkdir()
    out = tmp_path / "sorted"

    result = val_sort(data, out)
    assert result.code == 0, result.err
    assert "sorted 24 images" in result.out
    assert "3 files skipped (first: ILSVRC2012_val_00099999.JPEG: no line 99999 in" in result.out
    assert "README.txt: not an ILSVRC2012_val_XXXXXXXX.JPEG name" in result.out
    record = json.loads(val_sort(data, out, "--json").out)
    assert record["skipped"] == 3 and {s["path"] for s in record["first_skipped"]} == {
        "README.txt",
        "ILSVRC2012_val_00099999.JPEG",
        "extra",
    }
    assert not (out / "README.txt").exists() and sorted(os.listdir(data.val))[:1] == ["ILSVRC2012_val_00000001.JPEG"]


def bad_inputs(data: SampleData, tmp_path: Path) -> Iterator[tuple[str, list[str], Path]]:
    """(what, val-sort arguments, the path the error must name)."""
    gt, syn, out = str(data.ground_truth), str(data.synsets), str(tmp_path / "out")

    def args(val: Path | str = data.val, g: str = gt, s: str = syn, o: str = out) -> list[str]:
        return [str(val), "--ground-truth", g, "--synsets", s, "--out", o]

    missing = tmp_path / "nope"
    yield "VAL_DIR missing", args(val=missing), missing
    yield "VAL_DIR a file", args(val=data.ground_truth), data.ground_truth
    yield "ground truth missing", args(g=str(missing)), missing
    yield "synsets missing", args(s=str(missing)), missing
    bad_gt = tmp_path / "gt.txt"
    bad_gt.write_text("1\n2\nthree\n")
    yield "ground truth not numbers", args(g=str(bad_gt)), bad_gt
    big_gt = tmp_path / "big.txt"
    big_gt.write_text("1\n5000\n")
    yield "ground truth beyond the synsets", args(g=str(big_gt)), big_gt
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    yield "ground truth empty", args(g=str(empty)), empty
    yield "synsets empty", args(s=str(empty)), empty
    image = data.val / "ILSVRC2012_val_00000001.JPEG"
    yield "synsets binary", args(s=str(image)), image
    bad_mat = tmp_path / "meta.mat"
    bad_mat.write_bytes(b"not a mat file at all" * 20)
    yield "synsets a broken .mat", args(s=str(bad_mat)), bad_mat
    yield "synsets the ground truth", args(s=gt), data.ground_truth
    yield "out inside VAL_DIR", args(o=str(data.val / "sorted")), data.val / "sorted"
    yield "out is VAL_DIR", args(o=str(data.val)), data.val
    yield "out is a file", args(o=str(data.synsets)), data.synsets
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    (nothing / "notes.txt").write_text("x")
    yield "nothing to sort", args(val=nothing), nothing


def test_bad_inputs_exit_2_naming_the_path_and_write_nothing(data: SampleData, tmp_path: Path) -> None:
    for what, args, named in bad_inputs(data, tmp_path):
        result = run_cli("val-sort", *args)
        assert result.code == 2, (what, result.out, result.err)
        assert str(named) in result.err, (what, result.err)
        assert "Traceback" not in result.err and not result.out, what
        assert not (tmp_path / "out").exists() and not (data.val / "sorted").exists(), what


def test_host_refuses_val_sort(data: SampleData, tmp_path: Path) -> None:
    result = run_cli("--host", "x", "val-sort", *val_sort_args(data, tmp_path / "out"))
    assert result.code == 2 and "val-sort" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "out").exists()
