"""HuggingFace image sets as downloaded (``hf-parquet``): parquet files, a repository's data/ directory and a
``save_to_disk`` directory, sharded into the same bytes as the ImageFolder tree of the same images."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clusterdeck.jobs.sample_data import SampleData
from clusterdeck.jobs.sample_hf import HfData, make_hf_parquet, make_save_to_disk
from tests.conftest import run_cli
from tests.test_shard_inputs import samples, shard, spec_of, tars


@pytest.fixture(scope="module")
def hf(sample_data: SampleData, tmp_path_factory: pytest.TempPathFactory) -> HfData:
    return make_hf_parquet(sample_data, tmp_path_factory.mktemp("hf"), files=3, row_group=5)


@pytest.fixture(scope="module")
def saved(sample_data: SampleData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_save_to_disk(sample_data, tmp_path_factory.mktemp("saved") / "train", files=2, batch=7)


def source_train(data: SampleData) -> dict[str, tuple[bytes, int]]:
    """Every train image by its shard name, with its ImageFolder label."""
    classes = sorted(data.wnids)
    return {
        f"{wnid}/{image.name}": (image.read_bytes(), k)
        for k, wnid in enumerate(classes)
        for image in (data.train / wnid).iterdir()
    }


def read_back(out: Path, split: str) -> dict[str, tuple[bytes, int]]:
    got = {}
    for s in samples(out, split):
        got[json.loads(s["json"])["path"]] = (s["jpg"], int(s["cls"]))
    return got


@pytest.mark.parametrize("kind", ["file", "data-dir", "repo-root", "save_to_disk"])
def test_every_sample_of_each_input_kind_reads_back(
    kind: str, hf: HfData, saved: Path, sample_data: SampleData, tmp_path: Path
) -> None:
    train = {
        "file": {"input": str(hf.files("train")[1])},
        "data-dir": {"input": str(hf.data), "split": "train"},
        "repo-root": {"input": str(hf.root), "split": "train"},
        "save_to_disk": {"input": str(saved)},
    }[kind]
    index = shard(spec_of(tmp_path / "s", shard_size_mb=0.2, train={**train, "format": "hf-parquet"}))
    got = read_back(tmp_path / "s", "train")
    source = source_train(sample_data)
    if kind == "file":
        rows = pq.ParquetFile(hf.files("train")[1]).read(columns=["image.path"]).column("image").to_pylist()
        source = {name: v for name, v in source.items() if name.split("/")[1] in {r["path"] for r in rows}}
    assert len(source) == (24 if kind == "file" else 72)
    assert got == source, "every image's bytes and label, each once"
    assert index["classes"] == sorted(sample_data.wnids)
    first = [
        int(s["cls"]) for s in samples(tmp_path / "s", "train")[: index["splits"]["train"]["shards"][0]["samples"]]
    ]
    assert len(index["splits"]["train"]["shards"]) > 1 and len(set(first)) > 1, "shard 0 mixes classes"
    assert not (tmp_path / "s" / ".spill").exists(), "the buckets are removed once the shards are written"


def test_the_same_seed_gives_the_imagefolder_trees_shards(
    hf: HfData, saved: Path, sample_data: SampleData, tmp_path: Path
) -> None:
    # Parquet sizes are estimated from the footer: max_samples cuts the shards where the tree's cut them.
    fixed = {"seed": 7, "shard_size_mb": 100, "max_samples": 10}
    shard(spec_of(tmp_path / "tree", **fixed, train={"input": str(sample_data.train)}))
    shard(spec_of(tmp_path / "pq", **fixed, train={"input": str(hf.root), "format": "hf-parquet", "split": "train"}))
    assert len(tars(tmp_path / "tree")) == 8
    assert tars(tmp_path / "pq") == tars(tmp_path / "tree")
    # save_to_disk sizes are exact (the Arrow offsets): the default sizing cuts them the same way too.
    shard(spec_of(tmp_path / "tree2", seed=3, train={"input": str(sample_data.train)}))
    shard(spec_of(tmp_path / "saved", seed=3, train={"input": str(saved), "format": "hf-parquet"}))
    assert len(tars(tmp_path / "tree2")) > 2 and tars(tmp_path / "saved") == tars(tmp_path / "tree2")


def test_classes_k_and_the_validation_split(hf: HfData, sample_data: SampleData, tmp_path: Path) -> None:
    index = shard(
        spec_of(
            tmp_path / "s",
            classes=4,
            train={"input": str(hf.data), "format": "hf-parquet", "split": "train"},
            val={"input": str(hf.data), "format": "hf-parquet", "split": "validation"},
        )
    )
    assert index["classes"] == sorted(sample_data.wnids)[:4]
    assert Counter(label for _, label in read_back(tmp_path / "s", "train").values()) == {k: 12 for k in range(4)}
    truth = sample_data.ground_truth.read_text().split()
    val = read_back(tmp_path / "s", "val")
    assert len(val) == 16 and index["splits"]["val"]["excluded"] == 8
    for name, (data, label) in val.items():
        wnid, file = name.split("/")
        assert sample_data.wnids[int(truth[int(file[15:23]) - 1]) - 1] == wnid == index["classes"][label]
        assert data == (sample_data.val / file).read_bytes()


def test_duplicate_class_names_stay_apart(sample_data: SampleData, tmp_path: Path) -> None:
    from clusterdeck.jobs.sample_hf import hf_table, train_rows

    rows = train_rows(sample_data)
    names = ["crane", "tench", "crane", "goldfish", "maillot", "maillot"]
    pq.write_table(hf_table(rows, names), tmp_path / "x.parquet", row_group_size=20)
    index = shard(spec_of(tmp_path / "s", train={"input": str(tmp_path / "x.parquet"), "format": "hf-parquet"}))
    assert index["classes"] == ["crane [0]", "tench", "crane [2]", "goldfish", "maillot [4]", "maillot [5]"]
    assert {label for _, label in read_back(tmp_path / "s", "train").values()} == set(range(6))


def test_inspect_reads_the_split(hf: HfData, saved: Path) -> None:
    result = run_cli("inspect", str(hf.root), "--split", "validation", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert (report["format"], report["images"], report["classes"]["count"]) == ("hf-parquet", 24, 6)
    assert report["image_sizes"]["measured"] == 24 and report["image_sizes"]["unreadable"] == 0
    result = run_cli("inspect", str(hf.root))
    assert result.code == 2 and "split" in result.err and "test, train, validation" in result.err, result.err


def bad_inputs(hf: HfData, root: Path) -> dict[str, tuple[dict[str, str], str]]:
    """Each bad input: its [shard.train] table and the file the error must name."""
    no_image = root / "no-image.parquet"
    table = pq.read_table(hf.files("train")[0]).rename_columns(["picture", "label"])
    pq.write_table(table, no_image)
    corrupt = root / "corrupt" / "train-00000-of-00001.parquet"
    corrupt.parent.mkdir()
    data = hf.files("train")[0].read_bytes()
    corrupt.write_bytes(data[:-12] + b"\0" * 12)  # the footer's length and magic are gone
    test = hf.files("test")[0]
    return {
        "no image column": ({"input": str(no_image)}, f"{no_image}: no 'image' column"),
        "corrupt footer": ({"input": str(corrupt.parent)}, f"{corrupt}: not a readable parquet file"),
        "label -1": ({"input": str(hf.root), "split": "test"}, f"{test}: the test split has no labels (label -1)"),
        "no split": ({"input": str(hf.root)}, "split: "),
    }


def test_bad_input_exits_2_at_submit_naming_the_file(hf: HfData, tmp_path: Path) -> None:
    for what, (train, message) in bad_inputs(hf, tmp_path).items():
        spec = tmp_path / f"{what.replace(' ', '-')}.toml"
        table = "".join(f'{k} = "{v}"\n' for k, v in {**train, "format": "hf-parquet"}.items())
        spec.write_text(
            f'name = "bad"\n[cluster]\nexecutor = "local"\n[shard]\noutput = "{tmp_path / "o"}"\n[shard.train]\n{table}'
        )
        result = run_cli("--runs-root", str(tmp_path / "runs"), "submit", str(spec))
        assert result.code == 2, (what, result.out, result.err)
        assert message in result.err and "Traceback" not in result.err, (what, result.err)
        assert len(result.err.strip().splitlines()) == 1, (what, result.err)


def test_a_run_shards_parquet_end_to_end(hf: HfData, sample_data: SampleData, tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(f"""
name = "hf"
[cluster]
executor = "local"
[shard]
output = "{tmp_path / "out"}"
shard_size_mb = 0.3
workers = 2
[shard.train]
input = "{hf.root}"
format = "hf-parquet"
split = "train"
[shard.val]
input = "{hf.data}"
format = "hf-parquet"
split = "validation"
""")
    result = run_cli("--runs-root", str(tmp_path / "runs"), "submit", str(spec), "--wait", timeout=240)
    assert result.code == 0, (result.out, result.err)
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert (index["splits"]["train"]["samples"], index["splits"]["val"]["samples"]) == (72, 24)
    assert read_back(tmp_path / "out", "train") == source_train(sample_data)
    assert not (tmp_path / "out" / ".spill").exists()


def test_a_killed_spill_is_redone_and_removed(hf: HfData, sample_data: SampleData, tmp_path: Path) -> None:
    """A spill folder without its DONE marker (a killed attempt's) is not trusted: the re-run gives the same shards."""
    train = {"input": str(hf.data), "format": "hf-parquet", "split": "train"}
    shard(spec_of(tmp_path / "a", train=train))
    out = tmp_path / "b"
    stale = out / ".spill" / "train-task-00000"
    stale.mkdir(parents=True)
    (stale / "bucket-00000").write_bytes(b"half written")
    shard(spec_of(out, train=train))
    assert tars(out) == tars(tmp_path / "a") and not (out / ".spill").exists()


def test_pyarrow_is_imported_only_when_a_parquet_input_is_read(sample_data: SampleData) -> None:
    import subprocess
    import sys

    script = f"""
import contextlib, io, sys
from clusterdeck.app.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["inspect", {str(sample_data.train)!r}]) == 0
assert "pyarrow" not in sys.modules, "the CLI and the other formats must not import pyarrow"
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_an_array_spills_the_input_once_before_its_tasks(hf: HfData, sample_data: SampleData, tmp_path: Path) -> None:
    """Two array tasks: a ``spill`` job streams the parquet once for both (each task reads only its buckets), the
    shards are those of one task, and the merge removes the spill."""
    from clusterdeck.jobs.runspec import load_spec
    from clusterdeck.jobs.submit import preview_run

    text = f"""
name = "hf array"
[cluster]
executor = "local"
[shard]
output = "{tmp_path / "out"}"
shard_size_mb = 0.3
workers = 1
[shard.resources]
array_tasks = 2
[shard.train]
input = "{hf.data}"
format = "hf-parquet"
split = "train"
"""
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    result = run_cli("--runs-root", str(tmp_path / "runs"), "submit", str(spec), "--wait", "--json", timeout=240)
    assert result.code == 0, (result.out, result.err)
    view = json.loads(result.out)
    assert [p["part"] for p in view["steps"][0]["parts"]] == ["spill", "task-0", "task-1", "merge"]
    assert read_back(tmp_path / "out", "train") == source_train(sample_data)
    assert not (tmp_path / "out" / ".spill").exists()
    logs = run_cli("--runs-root", str(tmp_path / "runs"), "logs", view["run_id"]).out
    assert logs.count("spill: streaming the input") == 1, logs  # the spill job's; no task streamed it again
    slurm = spec.with_name("slurm.toml")
    slurm.write_text(text.replace('executor = "local"', 'executor = "slurm"'))
    scripts = preview_run(load_spec(slurm), tmp_path / "runs")
    assert list(scripts) == ["shard spill", "shard array", "shard merge"]  # in this order, each after the one before
    assert "--array=0-1%2" in scripts["shard array"] and "afterok:<shard spill job id>" in scripts["shard array"]
