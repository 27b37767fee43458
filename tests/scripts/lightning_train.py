"""A user's Lightning script: ``ShardDataModule`` over the step's shards, a tiny CNN, top-1 logged each epoch with
``clusterdeck.log_epoch`` (so ``watch``, the app and ``diff`` show it)."""

import sys

import lightning
import torch
from torch import nn

import clusterdeck
from clusterdeck.lightning import ShardDataModule


class Classifier(lightning.LightningModule):
    def __init__(self, classes: int) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.net = nn.Sequential(
            block(3, 16, 1), block(16, 32, 2), block(32, 64, 2), block(64, 64, 2), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(64, classes),
        )  # fmt: skip
        self.right = self.seen = 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        images, labels = batch
        loss = nn.functional.cross_entropy(self.net(images), labels)
        clusterdeck.log(step=self.global_step + 1, epoch=float(self.current_epoch), loss=loss.item())
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> None:
        images, labels = batch
        self.right += int((self.net(images).argmax(1) == labels).sum())
        self.seen += len(labels)

    def on_validation_epoch_end(self) -> None:
        if self.seen:
            clusterdeck.log_epoch(epoch=self.current_epoch + 1, top1=self.right / self.seen)
            print(f"epoch {self.current_epoch + 1}: val top-1 {self.right / self.seen:.1%}", flush=True)
        self.right = self.seen = 0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=0.003)


torch.manual_seed(0)
data = ShardDataModule(batch_size=16, val_batch_size=64, image_size=32, workers=1)  # $CLUSTERDECK_SHARDS
model = Classifier(len(data.classes))
quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False}
trainer = lightning.Trainer(accelerator="cpu", devices=1, max_epochs=int(sys.argv[1]), num_sanity_val_steps=0, **quiet)
trainer.fit(model, datamodule=data)
