"""An example of your own training script as a ``[script]`` step (templates/own-script.toml): plain PyTorch DDP
on clusterdeck's loader, with metrics that ``watch``, the app and ``diff`` show, and a requeue at the time limit.

It runs unchanged by hand (``python train.py --shards DIR``: one process, no metrics file) and under clusterdeck,
as one task or as many (one per GPU, or ``tasks_per_node`` on CPUs), where ``init_process_group`` reads the
``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT`` the step sets.
"""

from __future__ import annotations

import argparse
import hashlib
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from cnn import build_cnn
from torch.nn.parallel import DistributedDataParallel

import clusterdeck


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", default=None, help="a shard set; default: the step's $CLUSTERDECK_SHARDS")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--workers", default="auto")
    args = parser.parse_args()
    workers = args.workers if args.workers == "auto" else int(args.workers)

    task = clusterdeck.task()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", task.local_rank) if cuda else torch.device("cpu")
    if task.world_size > 1:
        dist.init_process_group("nccl" if cuda else "gloo")  # env://: the step set RANK, WORLD_SIZE, MASTER_*
    size = {"batch_size": args.batch_size, "image_size": args.image_size, "workers": workers, "device": device}
    train = clusterdeck.ShardLoader(args.shards, "train", train=True, **size)
    val = clusterdeck.ShardLoader(args.shards, "val", train=False, **size)
    torch.manual_seed(0)  # the same initial weights on every rank
    model = build_cnn(num_classes=len(train.classes), width=args.width).to(device)
    net = DistributedDataParallel(model) if task.world_size > 1 else model
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=5e-4)
    start = clusterdeck.load_checkpoint("last.pt")  # None on the first attempt
    if start is not None:
        model.load_state_dict(start["model"])
        optimizer.load_state_dict(start["optimizer"])
        train.load_state_dict(start["loader"])
    step = start["step"] if start else 0
    while train.epoch < args.epochs:
        epoch, started, seen = train.epoch, time.perf_counter(), 0
        net.train()
        for i, (images, labels) in enumerate(train, start=train.step + 1):  # a resumed epoch goes on where it was
            loss = F.cross_entropy(net(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step, seen = step + 1, seen + len(labels)
            clusterdeck.log(step=step, epoch=epoch + i / len(train), loss=loss.item(), lr=args.lr)
            last = i == len(train)  # the epoch's last batch: evaluate and checkpoint it first (below)
            if not last and stop_everywhere(task.stop_requested(), device):  # every rank stops at the same step
                if task.rank == 0:
                    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
                    clusterdeck.save_checkpoint({**state, "loader": train.state_dict()}, "last.pt")
                return clusterdeck.REQUEUE
        rate = seen * task.world_size / (time.perf_counter() - started)  # this rank's pace, times the ranks
        top1, val_loss = evaluate(net, val, device)
        clusterdeck.log_epoch(epoch=epoch + 1, top1=top1, val_loss=val_loss, images_per_s=rate)  # any number: a curve
        if task.rank == 0:
            print(f"epoch {epoch + 1}: val top-1 {top1:.1%}, loss {val_loss:.3f}", flush=True)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
            clusterdeck.save_checkpoint({**state, "loader": train.state_dict()}, "last.pt")
        if train.epoch < args.epochs and stop_everywhere(task.stop_requested(), device):
            return clusterdeck.REQUEUE  # the epoch's checkpoint is saved: go on from the next one
    print(f"rank {task.rank}: done; weights {weights_digest(model)}", flush=True)  # the same on every rank
    return 0


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def stop_everywhere(here: bool, device: torch.device) -> bool:
    """True on every rank once any rank was asked to stop (SIGUSR2 may reach the ranks at different steps)."""
    if not dist.is_initialized():
        return here
    flag = torch.tensor([1.0 if here else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


@torch.no_grad()
def evaluate(net: torch.nn.Module, val: clusterdeck.ShardLoader, device: torch.device) -> tuple[float, float]:
    """Top-1 and mean loss over the whole val split (each rank reads its share; the sums are added up)."""
    net.eval()
    sums = torch.zeros(3, device=device)  # correct, loss, samples
    for images, labels in val:
        logits = net(images)
        sums += torch.stack(
            [(logits.argmax(1) == labels).sum().float(), F.cross_entropy(logits, labels, reduction="sum"),
             torch.tensor(float(len(labels)), device=device)]
        )  # fmt: skip
    if dist.is_initialized():
        dist.all_reduce(sums)
    return (sums[0] / sums[2]).item(), (sums[1] / sums[2]).item()


if __name__ == "__main__":
    raise SystemExit(main())
