"""``clusterdeck.lightning.ShardDataModule`` under a real ``lightning.Trainer`` on the CPU."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

lightning = pytest.importorskip("lightning", reason="the lightning extra (pip install 'clusterdeck[lightning]')")

from clusterdeck.lightning import ShardDataModule  # noqa: E402  (after the skip: it imports lightning)


def test_without_lightning_the_import_error_names_the_extra(tmp_path: Path) -> None:
    code = "import sys; sys.modules['lightning'] = None; import clusterdeck.lightning"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "ImportError: clusterdeck.lightning needs Lightning: pip install 'clusterdeck[lightning]'"
    )


class Classifier(lightning.LightningModule):
    def __init__(self, lr: float = 0.003) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.net = nn.Sequential(
            block(3, 16, 1), block(16, 32, 2), block(32, 64, 2), block(64, 64, 2), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(64, 6),
        )  # fmt: skip
        self.lr = lr
        self.right = self.seen = 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        images, labels = batch
        return nn.functional.cross_entropy(self.net(images), labels)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        images, labels = batch
        self.right += int((self.net(images).argmax(1) == labels).sum())
        self.seen += len(labels)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


def trainer(**options: Any) -> lightning.Trainer:
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    return lightning.Trainer(accelerator="cpu", devices=1, **{"enable_checkpointing": False, **quiet, **options})


def test_the_data_module_trains_a_tiny_model_above_twice_chance(learnable_shards: Path) -> None:
    torch.manual_seed(0)
    model = Classifier()
    data = ShardDataModule(learnable_shards, batch_size=16, val_batch_size=64, image_size=32, workers=1)
    trainer(max_epochs=8, num_sanity_val_steps=0, check_val_every_n_epoch=8).fit(model, datamodule=data)
    assert model.seen == 120  # every val sample once
    assert model.right / model.seen > 2 / 6, f"top-1 {model.right / model.seen:.2f}"
    assert data.state_dict() == {"train": {**data.state_dict()["train"], "epoch": 8, "step": 0}}


class Seen(lightning.Callback):
    """The digest of every train batch, in the order the steps get them."""

    def __init__(self) -> None:
        self.digests: list[str] = []

    def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
        images, labels = batch
        self.digests.append(hashlib.sha1(images.numpy().tobytes() + labels.numpy().tobytes()).hexdigest())


def test_a_run_resumed_mid_epoch_gets_exactly_the_batches_it_had_not_trained_on(
    learnable_shards: Path, tmp_path: Path
) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    def module() -> ShardDataModule:
        return ShardDataModule(learnable_shards, batch_size=16, image_size=16, workers=2, val_split=None, seed=5)

    first, saves = Seen(), ModelCheckpoint(tmp_path, every_n_train_steps=7, save_top_k=-1)
    trainer(max_epochs=1, enable_checkpointing=True, callbacks=[first, saves]).fit(Classifier(), datamodule=module())
    assert len(first.digests) == 300 // 16
    checkpoint = tmp_path / "epoch=0-step=7.ckpt"
    assert checkpoint.is_file(), sorted(p.name for p in tmp_path.iterdir())

    again = Seen()
    trainer(max_epochs=1, callbacks=[again]).fit(Classifier(), datamodule=module(), ckpt_path=checkpoint)
    assert again.digests == first.digests[7:]
