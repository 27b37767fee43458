from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from PIL import Image

from clusterdeck.jobs.sample_data import SampleData
from clusterdeck.jobs.shard.sources import read_synsets
from tests.conftest import run_cli


def test_layout_matches_ilsvrc2012(sample_data: SampleData) -> None:
    wnids = sorted(p.name for p in sample_data.train.iterdir())
    assert wnids == sorted(sample_data.wnids) and len(wnids) == 6
    for wnid in wnids:
        files = sorted(p.name for p in (sample_data.train / wnid).iterdir())
        assert files == sorted(f"{wnid}_{k}.JPEG" for k in range(12))
    val = sorted(p.name for p in sample_data.val.iterdir())
    assert val == [f"ILSVRC2012_val_{n:08d}.JPEG" for n in range(1, 25)]


def test_synset_order_is_not_sorted_and_both_forms_agree(sample_data: SampleData) -> None:
    text = read_synsets(sample_data.synsets)
    assert text == sample_data.wnids
    assert text != sorted(text)
    assert read_synsets(sample_data.meta_mat) == text


def test_ground_truth_is_balanced_and_in_range(sample_data: SampleData) -> None:
    ids = [int(x) for x in sample_data.ground_truth.read_text().split()]
    assert len(ids) == 24
    assert Counter(ids) == {i: 4 for i in range(1, 7)}


def test_images_are_real_jpegs_of_varied_size(sample_data: SampleData) -> None:
    shorter = set()
    for path in list(sample_data.train.glob("*/*.JPEG"))[:30]:
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            shorter.add(min(im.size))
    assert min(shorter) >= 200 and max(shorter) <= 500
    assert len(shorter) > 10


def test_sample_data_also_writes_the_other_formats_which_inspect_reads(tmp_path: Path) -> None:
    wrote = run_cli("sample-data", str(tmp_path), "--classes", "3", "--train-per-class", "5", "--val-per-class",
                    "2", "--also", "hf-parquet", "imagefolder-tar", "cifar")  # fmt: skip
    assert wrote.code == 0, wrote.err
    for path, extra, fmt, images in (
        (tmp_path / "hf", ["--split", "train"], "hf-parquet", 15),
        (tmp_path / "train.tar.gz", [], "imagefolder-tar", 15),
        (tmp_path / "cifar" / "cifar-10-python.tar.gz", [], "cifar", 50),
    ):
        report = run_cli("inspect", str(path), *extra, "--json")
        assert report.code == 0, report.err
        assert (json.loads(report.out)["format"], json.loads(report.out)["images"]) == (fmt, images)
