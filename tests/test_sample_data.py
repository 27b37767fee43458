from __future__ import annotations

from collections import Counter

from PIL import Image

from clusterdeck.jobs.sample_data import SampleData
from clusterdeck.jobs.shard.sources import read_synsets


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
