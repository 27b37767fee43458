"""Tars of an ImageFolder tree, plain and compressed, sharded as the extracted tree is: same bytes, same shards."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import webdataset as wds

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.runspec import validate
from clusterdeck.jobs.sample_data import SampleData
from clusterdeck.jobs.sample_imagefolder_tar import make_imagefolder_tar, make_noise_tree
from clusterdeck.jobs.shard.inspect import inspect_path
from clusterdeck.jobs.shard.step import run_shard_part
from clusterdeck.jobs.spec import ShardSpec
from clusterdeck.jobs.steps.shard import ShardStep
from tests.conftest import REPO, run_cli

PREFIX = "imagenet21k_train"
NOISE_MB = 150
"""The noise archive: larger than the memory limit it is sharded under."""
DATA_LIMIT = 110 * 10**6
"""RLIMIT_DATA for that shard step: the interpreter with the shard step imported peaks near 71 MB of data
(VmData, measured here); RLIMIT_AS cannot sit below 150 MB, as the mapped libraries alone reserve 131 MB."""


def spec_of(out: Path, shard_size_mb: float = 0.3, workers: int = 2, **shard: object) -> ShardSpec:
    table = {"output": str(out), "shard_size_mb": shard_size_mb, "workers": workers, **shard}
    spec = validate({"name": "t", "shard": table}).shard
    assert spec is not None
    return spec


def shard(spec: ShardSpec) -> dict:
    run_shard_part(spec, "main", lambda _: None)
    return json.loads((spec.output / "index.json").read_text())


def tars(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tar"))}


@pytest.fixture(scope="module")
def archives(sample_data: SampleData, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The train tree as a plain tar at the root, and compressed under a prefix (the default finds it)."""
    root = tmp_path_factory.mktemp("archives")
    return {
        ".tar": make_imagefolder_tar(sample_data.train, root / "train.tar"),
        ".tar.gz": make_imagefolder_tar(sample_data.train, root / "imagenet21k_resized.tar.gz", PREFIX),
        ".tar.zst": make_imagefolder_tar(sample_data.train, root / "train.tar.zst", PREFIX),
    }


@pytest.fixture(scope="module")
def tree_shards(sample_data: SampleData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tree") / "shards"
    shard(spec_of(out, train={"input": str(sample_data.train)}))
    return out


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """50 images of 1000×1000 random pixels (3 MB each, stored): a 150 MB .tar.gz and its tree."""
    root = tmp_path_factory.mktemp("noise")
    tree = make_noise_tree(root / "train", classes=5, per_class=10, side=1000)
    archive = make_imagefolder_tar(tree, root / "noise.tar.gz")
    assert archive.stat().st_size > NOISE_MB * 10**6 > DATA_LIMIT
    return {"tree": tree, "archive": archive}


@pytest.mark.parametrize("kind", [".tar", ".tar.gz", ".tar.zst"])
def test_an_archive_gives_the_trees_shards_byte_for_byte(
    kind: str, archives: dict[str, Path], sample_data: SampleData, tree_shards: Path, tmp_path: Path
) -> None:
    out = tmp_path / "s"
    index = shard(spec_of(out, train={"input": str(archives[kind]), "format": "imagefolder-tar"}))
    assert tars(out) == tars(tree_shards), "the same seed: the extracted tree's shards, whatever the member order"
    assert index["classes"] == sorted(sample_data.wnids)
    got = list(wds.WebDataset(sorted(str(p) for p in out.glob("train-*.tar")), shardshuffle=False))
    assert len(got) == len(list(sample_data.train.rglob("*.JPEG"))) == index["splits"]["train"]["samples"]
    for s in got:
        name = json.loads(s["json"])["path"]
        assert s["jpg"] == (sample_data.train / name).read_bytes()
        assert index["classes"][int(s["cls"])] == name.split("/")[0]
    first = wds.WebDataset(str(out / "train-000000.tar"), shardshuffle=False)
    assert len({int(s["cls"]) for s in first}) > 1, "shard 0 mixes classes"
    assert not (out / ".spill").exists(), "the buckets are gone once the shards are written"
    assert not list(out.rglob("*.JPEG")), "nothing extracted"


def test_array_tasks_share_one_listing_and_spill_only_their_shards(
    archives: dict[str, Path], tree_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s"
    spec = spec_of(
        out, train={"input": str(archives[".tar.zst"]), "format": "imagefolder-tar"}, resources={"array_tasks": 3}
    )
    for task in range(3):
        run_shard_part(spec, f"task-{task}", lambda _: None)
    run_shard_part(spec, "merge", lambda _: None)
    assert tars(out) == tars(tree_shards) and not (out / ".spill").exists()
    assert len(list((out / ".sources").rglob("*.members"))) == 1, "listed once, read back by the later parts"
    spilled = [int(line.split()[5]) for line in capsys.readouterr().out.splitlines() if "spill: streaming" in line]
    assert len(spilled) == 3 and sum(spilled) == 72, "without the spill job, each task spills its own shards only"

    # as the step runs it: the spill job streams the archive once for all three tasks, which only read
    again = tmp_path / "again"
    spec = spec_of(again, train=spec.train.model_dump(exclude_none=True), resources={"array_tasks": 3})
    assert ShardStep().parts(validate({"name": "a", "shard": spec.model_dump(mode="json")})) == [
        "spill", "task-0", "task-1", "task-2", "merge"
    ]  # fmt: skip
    for part in ["spill", "task-0", "task-1", "task-2", "merge"]:
        run_shard_part(spec, part, lambda _: None)
    assert tars(again) == tars(tree_shards) and not (again / ".spill").exists()
    spilled = [int(line.split()[5]) for line in capsys.readouterr().out.splitlines() if "spill: streaming" in line]
    assert spilled == [72], "one spill, by the spill job"


def test_a_prefix_picks_one_folder_of_the_archive_and_classes_k_a_subset(
    sample_data: SampleData, tmp_path: Path
) -> None:
    other = tmp_path / "val"
    for image in sorted(sample_data.train.rglob("*_1.JPEG"))[:3]:
        (other / image.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, other / image.parent.name / image.name)
    archive = tmp_path / "21k.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:  # imagenet21k_val/ first: the prefix is not the first folder
        tar.add(other, arcname="imagenet21k_val")
        tar.add(sample_data.train, arcname=PREFIX)

    with pytest.raises(UserError, match=rf"{archive}: its top folders \(imagenet21k_train, imagenet21k_val\)"):
        shard(spec_of(tmp_path / "none", train={"input": str(archive), "format": "imagefolder-tar"}))
    inp = {"input": str(archive), "format": "imagefolder-tar", "prefix": PREFIX}
    index = shard(spec_of(tmp_path / "a", classes=3, train=inp))
    shard(spec_of(tmp_path / "b", classes=3, train={"input": str(sample_data.train)}))
    assert tars(tmp_path / "a") == tars(tmp_path / "b")
    assert index["classes"] == sorted(sample_data.wnids)[:3] and index["splits"]["train"]["excluded"] == 36

    report = inspect_path(archive, prefix="imagenet21k_val")
    assert (report["format"], report["images"], report["classes"]["count"]) == ("imagefolder-tar", 3, 3)
    assert report["image_sizes"]["measured"] == 64 and report["image_sizes"]["unreadable"] == 0


def test_detection_keeps_the_ilsvrc_tars_theirs(
    archives: dict[str, Path], ilsvrc: dict[str, Path], sample_data: SampleData, tmp_path: Path
) -> None:
    from clusterdeck.jobs.shard.inspect import detect

    assert {kind: detect(path).name for kind, path in archives.items()} == dict.fromkeys(archives, "imagefolder-tar")
    assert (detect(ilsvrc["train"]).name, detect(ilsvrc["val"]).name) == ("ilsvrc-train-tar", "ilsvrc-val-tar")
    packed = tmp_path / "ILSVRC2012_img_train.tar.gz"
    with tarfile.open(packed, "w:gz") as tar:
        tar.add(ilsvrc["train"], arcname="ILSVRC2012_img_train.tar")
    with pytest.raises(UserError, match=r"a compressed tar of tars \(first: ILSVRC2012_img_train.tar\).*decompressed"):
        detect(packed)
    report = inspect_path(archives[".tar"])
    assert report["images"] == 72 and report["bytes"] == sum(
        p.stat().st_size for p in sample_data.train.rglob("*.JPEG")
    )


def test_a_killed_spill_is_redone_identically_and_leaves_nothing(noise: dict[str, Path], tmp_path: Path) -> None:
    """The step is killed by the kernel (SIGXFSZ) as its first bucket passes 10 MB: mid-spill, no DONE."""
    out = tmp_path / "s"
    killed = _shard_in_subprocess(noise["archive"], out, "RLIMIT_FSIZE", 10 * 2**20)
    assert killed.returncode == -25, killed.stderr[-2000:]  # SIGXFSZ
    (spilled,) = (out / ".spill").iterdir()
    assert list(spilled.glob("bucket-*")) and not (spilled / "DONE").exists()

    shard(
        spec_of(out, shard_size_mb=20, workers=1, train={"input": str(noise["archive"]), "format": "imagefolder-tar"})
    )
    shard(spec_of(tmp_path / "tree", shard_size_mb=20, workers=1, train={"input": str(noise["tree"])}))
    assert tars(out) == tars(tmp_path / "tree") and len(tars(out)) > 2
    assert not (out / ".spill").exists()


def test_a_compressed_tar_larger_than_the_memory_limit_is_sharded(noise: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "s"
    done = _shard_in_subprocess(noise["archive"], out, "RLIMIT_DATA", DATA_LIMIT)
    assert done.returncode == 0, done.stderr[-2000:]
    index = json.loads((out / "index.json").read_text())
    assert index["splits"]["train"]["samples"] == 50 and index["splits"]["train"]["bytes"] > NOISE_MB * 10**6
    whole = _shard_in_subprocess(noise["archive"], tmp_path / "x", "RLIMIT_DATA", DATA_LIMIT, read_whole=True)
    assert "MemoryError" in whole.stderr, "the limit bites: the archive read whole does not fit under it"


def _shard_in_subprocess(
    archive: Path, out: Path, limit: str, value: int, read_whole: bool = False
) -> subprocess.CompletedProcess[str]:
    """The shard step (one worker) in a process of its own, its resource ``limit`` set to ``value``; ``read_whole``:
    the archive read into memory first, as a reader without the spill would need."""
    code = f"""
import resource, signal
resource.setrlimit(resource.{limit}, ({value}, {value}))
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it: a file past the limit then kills, as the kernel does
from clusterdeck.jobs.runspec import validate
from clusterdeck.jobs.shard.step import run_shard_part
whole = open({str(archive)!r}, "rb").read() if {read_whole} else b""
table = {{"output": {str(out)!r}, "shard_size_mb": 20, "workers": 1,
         "train": {{"input": {str(archive)!r}, "format": "imagefolder-tar"}}}}
run_shard_part(validate({{"name": "t", "shard": table}}).shard, "main", lambda _: None)
"""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


def test_bad_archives_are_named(archives: dict[str, Path], tmp_path: Path) -> None:
    data = archives[".tar.gz"].read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=rf"^{cut}: truncated: the archive ends early"):
        shard(spec_of(tmp_path / "a", train={"input": str(cut), "format": "imagefolder-tar"}))
    assert not list((tmp_path / "a").glob("*.tar"))
    result = run_cli("inspect", str(cut))
    assert result.code == 2 and result.err.count("\n") == 1 and f"{cut}: truncated" in result.err

    stray = tmp_path / "stray.tar.gz"
    with tarfile.open(stray, "w:gz") as tar:
        for name in ("n01/a.JPEG", "n01/b.JPEG", "notes.txt"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(UserError, match=rf"{stray}: member notes.txt is in no class folder"):
        shard(spec_of(tmp_path / "b", train={"input": str(stray), "format": "imagefolder-tar"}))

    plain = tmp_path / "stray.tar"  # plain: seen at submit, from its first headers
    with tarfile.open(plain, "w") as tar:
        for name in ("n01/a.JPEG", "notes.txt"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "x"\n[shard]\noutput = "{tmp_path / "c"}"\n[shard.train]\ninput = "{plain}"\n'
        'format = "imagefolder-tar"\n'
    )
    result = run_cli("submit", str(spec))
    assert result.code == 2 and f"shard.train: {plain}: member notes.txt is in no class folder" in result.err
    assert "Traceback" not in result.err and not (tmp_path / "c").exists()


def test_submit_wait_shards_a_tar_gz_on_the_local_executor(
    archives: dict[str, Path], tree_shards: Path, tmp_path: Path, home: Path
) -> None:
    out = tmp_path / "s"
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "21k"\n[cluster]\nexecutor = "local"\n[shard]\noutput = "{out}"\nshard_size_mb = 0.3\nworkers = 2\n'
        f'[shard.train]\ninput = "{archives[".tar.gz"]}"\nformat = "imagefolder-tar"\nprefix = "{PREFIX}"\n'
    )
    result = run_cli("submit", str(spec), "--wait")
    assert result.code == 0, result.err
    assert tars(out) == tars(tree_shards) and not (out / ".spill").exists()


def test_an_arrays_train_and_val_from_one_archive_are_listed_and_spilled_in_one_pass_each(
    sample_data: SampleData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ImageNet-21K-P's layout: imagenet21k_train/ and imagenet21k_val/ in one .tar.gz. The spill job streams the
    archive once for both splits' shards, and the listing is made once for both."""
    archive = tmp_path / "21k.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(sample_data.train, arcname="imagenet21k_val")  # the same images: only the layout matters here
        tar.add(sample_data.train, arcname=PREFIX)
    train = {"input": str(archive), "format": "imagefolder-tar", "prefix": PREFIX}
    val = {"input": str(archive), "format": "imagefolder-tar", "prefix": "imagenet21k_val"}
    spec = spec_of(tmp_path / "out", train=train, val=val, resources={"array_tasks": 2})
    for part in ["spill", "task-0", "task-1", "merge"]:
        run_shard_part(spec, part, lambda _: None)
    out = capsys.readouterr().out
    assert out.count("spill: streaming the input") == 1, out
    assert len(list((tmp_path / "out" / ".sources").rglob("*.members"))) == 1
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["splits"]["train"]["samples"] == index["splits"]["val"]["samples"] == 72
    assert not (tmp_path / "out" / ".spill").exists()


def test_a_spill_made_before_the_archive_was_repacked_is_not_reused(
    sample_data: SampleData, tree_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The spill job ran; then the archive was written again with its members in another order (same images). The
    tasks must not read the old buckets at the old offsets: the spill is made again, and the merge leaves no spill
    behind, not even a task's from an earlier attempt."""
    archive = tmp_path / "train.tar.gz"
    make_imagefolder_tar(sample_data.train, archive, prefix=PREFIX)
    spec = spec_of(tmp_path / "out", train={"input": str(archive), "format": "imagefolder-tar"},
                   resources={"array_tasks": 2})  # fmt: skip
    run_shard_part(spec, "spill", lambda _: None)
    with tarfile.open(archive, "w:gz") as tar:  # the same files, in reverse order: every member moves
        for path in sorted(sample_data.train.rglob("*"), reverse=True):
            tar.add(path, arcname=f"{PREFIX}/{path.relative_to(sample_data.train)}", recursive=False)
    (tmp_path / "out" / ".spill" / "task-00007-0123456789ab").mkdir(parents=True)  # an earlier attempt's
    capsys.readouterr()
    for part in ["task-0", "task-1", "merge"]:
        run_shard_part(spec, part, lambda _: None)
    assert tars(tmp_path / "out") == tars(tree_shards) and not (tmp_path / "out" / ".spill").exists()
    assert capsys.readouterr().out.count("spill: streaming the input") == 2  # each task its own: the old one is stale


def test_one_task_spills_train_and_val_of_one_archive_in_one_pass(
    sample_data: SampleData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "21k.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(sample_data.train, arcname="imagenet21k_val")
        tar.add(sample_data.train, arcname=PREFIX)
    train = {"input": str(archive), "format": "imagefolder-tar", "prefix": PREFIX}
    val = {"input": str(archive), "format": "imagefolder-tar", "prefix": "imagenet21k_val"}
    shard(spec_of(tmp_path / "out", train=train, val=val))
    assert capsys.readouterr().out.count("spill: streaming the input") == 1
