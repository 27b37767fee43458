"""``export`` from inputs read through their listing: HuggingFace parquet (streamed), a tar of class folders
(plain, read at random, and gzipped, streamed). Every sample exported, the rows and labels are those the shard set
of the same images exports: the input's own reading changes nothing but the order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clusterdeck.jobs.runspec import validate
from clusterdeck.jobs.sample_data import SampleData
from clusterdeck.jobs.sample_hf import make_hf_parquet
from clusterdeck.jobs.sample_imagefolder_tar import make_imagefolder_tar
from clusterdeck.jobs.shard.step import run_shard_part
from tests.conftest import run_cli

SAMPLES = 72  # every train image of the sample data: the same set whatever the order of reading


def exported(inp: Path, out: Path, *extra: str) -> list[tuple[bytes, int]]:
    """Every sample of ``inp`` exported as npy rows, as sorted (row bytes, label) pairs."""
    result = run_cli("export", str(inp), "--out", str(out), "--samples", str(SAMPLES), "--val-fraction", "0",
                     "--image-size", "16", "--format", "npy", *extra)  # fmt: skip
    assert result.code == 0, result.err
    rows = np.load(out / f"imagenet_train_{SAMPLES}samples.npy")
    labels = np.load(out / f"imagenet_train_labels_{SAMPLES}samples.npy").argmax(axis=1)
    return sorted((row.tobytes(), int(label)) for row, label in zip(rows, labels, strict=True))


@pytest.fixture(scope="module")
def reference(sample_data: SampleData, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[bytes, int]]:
    """What the shard set of the ImageFolder tree exports."""
    root = tmp_path_factory.mktemp("reference")
    spec = validate({"name": "t", "shard": {"output": str(root / "set"), "train": {"input": str(sample_data.train)}}})
    assert spec.shard is not None
    run_shard_part(spec.shard, "main", lambda _: None)
    return exported(root / "set", root / "out")


def test_parquet_exports_what_its_shards_would(sample_data: SampleData, reference: list, tmp_path: Path) -> None:
    hf = make_hf_parquet(sample_data, tmp_path / "hf", files=2)
    assert exported(hf.root, tmp_path / "out") == reference
    wrong = run_cli("export", str(hf.root), "--out", str(tmp_path / "x"), "--samples", "4", "--split", "all")
    assert wrong.code == 2 and "--split: name the part" in wrong.err and "Traceback" not in wrong.err


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_a_tar_of_class_folders_exports_what_its_shards_would(
    suffix: str, sample_data: SampleData, reference: list, tmp_path: Path
) -> None:
    archive = make_imagefolder_tar(sample_data.train, tmp_path / f"train{suffix}", prefix="imagenet21k_train")
    assert exported(archive, tmp_path / "out") == reference
