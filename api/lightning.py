"""``clusterdeck.lightning.ShardDataModule``: the shard loader as a Lightning DataModule.

    trainer = lightning.Trainer(...)
    trainer.fit(model, datamodule=ShardDataModule(batch_size=64, image_size=224))

Each rank reads its own share of the shards (the rank and world size are Lightning's, which a ``[script]`` step's
``RANK``/``WORLD_SIZE`` set), so Lightning must not add a DistributedSampler: the loaders are not DataLoaders,
and it does not. Batches are the CPU tensors ``ShardLoader`` gives (normalised floats, int64 labels); Lightning
moves them to its device.

Resuming: Lightning saves the train loader's ``state_dict`` with each checkpoint and restores it, mid-epoch too.
Lightning reads one batch ahead of the step it runs, so the loader's own count is one batch ahead when a
checkpoint is taken; the state handed to Lightning counts the batches its steps processed instead, and the
resumed epoch goes on with the first batch no step saw.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Literal

try:
    import lightning.pytorch as pl
except ImportError:  # one line, naming what to install, rather than a traceback into Lightning's absence
    raise ImportError("clusterdeck.lightning needs Lightning: pip install 'clusterdeck[lightning]'") from None

from clusterdeck.loader import Batch, ShardLoader
from clusterdeck.taskview import read_task


class TrainBatches:
    """The train ``ShardLoader`` as Lightning iterates it: its state counts the batches Lightning's steps ran."""

    def __init__(self, loader: ShardLoader, module: ShardDataModule) -> None:
        self.loader, self.module = loader, module

    def __iter__(self) -> Iterator[Batch]:
        trainer = self.module.attached_trainer()
        if trainer is not None and self.loader.step == 0:
            self.loader.epoch = trainer.current_epoch  # Lightning's epoch, should it have skipped one (max_steps)
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)

    def state_dict(self) -> dict[str, int]:
        state = self.loader.state_dict()
        trainer = self.module.attached_trainer()
        fitting = trainer is not None and trainer.state.fn == "fit" and trainer.state.status == "running"
        if trainer is not None and fitting:  # also in a mid-epoch validation: Lightning reads a batch ahead
            state["epoch"] = trainer.current_epoch
            state["step"] = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        return state

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.loader.load_state_dict(state)


class ShardDataModule(pl.LightningDataModule):
    """Train and val loaders over one shard set (``shards``: a path, or None for ``task().shards``).

    The train split is read with train augmentation, the val split (``val_split``; None: no validation) with
    centre crops. The other arguments are ``ShardLoader``'s.
    """

    def __init__(
        self,
        shards: str | os.PathLike[str] | None = None,
        *,
        batch_size: int,
        image_size: int = 224,
        val_batch_size: int | None = None,
        train_split: str = "train",
        val_split: str | None = "val",
        workers: int | Literal["auto"] = "auto",
        decode: Literal["auto", "cpu", "pil"] = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.shards, self.batch_size, self.image_size = shards, batch_size, image_size
        self.val_batch_size = val_batch_size or batch_size
        self.train_split, self.val_split = train_split, val_split
        self.workers, self.decode, self.seed = workers, decode, seed
        self.train_batches: TrainBatches | None = None
        self._state: dict[str, int] | None = None

    @property
    def classes(self) -> list[str]:
        """The shard set's class names, in label order: ``len(data.classes)`` is the model's class count."""
        return self.train_dataloader().loader.classes

    def attached_trainer(self) -> pl.Trainer | None:
        """The Trainer this module is used by, or None (``self.trainer`` is None until Lightning attaches it)."""
        trainer: pl.Trainer | None = self.trainer
        return trainer

    def _place(self) -> tuple[int, int]:
        trainer = self.attached_trainer()
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        here = read_task()
        return here.rank, here.world_size

    def _loader(self, split: str, *, train: bool, batch_size: int) -> ShardLoader:
        rank, world = self._place()
        return ShardLoader(
            self.shards,
            split,
            batch_size=batch_size,
            image_size=self.image_size,
            train=train,
            workers=self.workers,
            decode=self.decode,
            seed=self.seed,
            rank=rank,
            world_size=world,
        )

    def train_dataloader(self) -> TrainBatches:
        if self.train_batches is None:
            loader = self._loader(self.train_split, train=True, batch_size=self.batch_size)
            self.train_batches = TrainBatches(loader, self)
            if self._state is not None:
                self.train_batches.load_state_dict(self._state)
        return self.train_batches

    def val_dataloader(self) -> Any:
        if self.val_split is None:
            return []
        return self._loader(self.val_split, train=False, batch_size=self.val_batch_size)

    def state_dict(self) -> dict[str, Any]:
        """Where the train loader is, saved in Lightning's checkpoints (see the module's docstring)."""
        return {"train": self.train_batches.state_dict()} if self.train_batches is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._state = state_dict.get("train")
        if self._state is not None and self.train_batches is not None:
            self.train_batches.load_state_dict(self._state)
