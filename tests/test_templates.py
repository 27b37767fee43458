"""Every template in templates/ is a valid spec once its $IMAGENET_* paths point at real data."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterdeck.jobs.runspec import load_spec
from clusterdeck.jobs.sample_cifar import make_cifar
from clusterdeck.jobs.sample_data import make_devkit, make_npz_batches, make_train_tar, make_val_tar
from clusterdeck.jobs.sample_hf import make_hf_parquet
from clusterdeck.jobs.sample_imagefolder_tar import make_imagefolder_tar
from clusterdeck.jobs.train.sizing import size_loader
from tests.conftest import REPO

TEMPLATES = sorted((REPO / "templates").glob("*.toml"))


def test_there_are_templates() -> None:
    assert len(TEMPLATES) >= 10


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_template_validates(template: Path, sample_data, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("IMAGENET_ROOT", str(tmp_path / "imagenet"))
    monkeypatch.setenv("IMAGENET_DEVKIT", str(sample_data.root))
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.setenv("PRETRAINED_WEIGHTS", str(sample_data.meta_mat))  # any existing file: the step reads it
    (tmp_path / "imagenet").symlink_to(sample_data.root)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    make_train_tar(sample_data, downloads / "ILSVRC2012_img_train.tar")
    make_val_tar(sample_data, downloads / "ILSVRC2012_img_val.tar")
    make_devkit(sample_data, downloads / "ILSVRC2012_devkit_t12.tar.gz")
    make_imagefolder_tar(sample_data.train, downloads / "imagenet21k_resized.tar.gz", "imagenet21k_train")
    monkeypatch.setenv("IMAGENET_DOWNLOADS", str(downloads))
    monkeypatch.setenv("IMAGENET_HF", str(make_hf_parquet(sample_data, tmp_path / "hf", files=2).root))
    monkeypatch.setenv("CIFAR_DOWNLOADS", str(make_cifar(tmp_path / "cifar", per_class=1, test_per_class=1).root))
    monkeypatch.setenv("IMAGENET64", str(make_npz_batches(tmp_path / "imagenet64", classes=2, train_per_class=2).root))
    spec = load_spec(template)
    assert spec.name
    assert spec.steps
    if spec.shard is not None:
        assert spec.shard.resources.cpus_per_task >= 1
    if spec.train is not None:
        res = spec.train.resources
        assert res.tasks == max(res.gpus_per_node, 1)  # one task per GPU
        workers = size_loader(spec.train.workers, spec.train.decode, cuda=res.gpus_per_node > 0, cpus=res.cpus_per_task)
        assert workers.workers <= res.cpus_per_task


@pytest.mark.parametrize("name", ["imagenet-resnet50", "imagenet-resnet152"])
def test_resnet_templates_follow_the_reference_recipe(name: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SCRATCH", str(tmp_path))
    train = load_spec(REPO / "templates" / f"{name}.toml").train
    assert train is not None
    res = train.resources
    assert (train.epochs, train.optimizer, train.lr, train.momentum, train.weight_decay) == (90, "sgd", 0.1, 0.9, 1e-4)
    assert (train.schedule, train.step_size, train.gamma) == ("step", 30, 0.1)
    assert train.batch_size * res.gpus_per_node * res.nodes * train.grad_accum == 256  # the batch lr 0.1 is for
