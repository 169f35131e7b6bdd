"""Process groups on torch.distributed: set-up, this process's share of a batch, and the few
collectives training and evaluation need. (Wrapping a model for DDP/FSDP is training/parallel.py.)

Launch with torchrun (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT); without it everything
here is a no-op and everything runs in one process. `train.batch_size` is the global batch: rank r
trains on its contiguous slice of it, so one config trains the same model on 1 or N processes.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from .errors import VidiffError


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def part(self, batch: int) -> slice:
        """This rank's contiguous slice of a global batch."""
        if batch % self.world:
            raise VidiffError(f"train.batch_size {batch} must be divisible by the {self.world} processes")
        size = batch // self.world
        return slice(self.rank * size, (self.rank + 1) * size)


def init_distributed() -> Dist:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPUs); one process otherwise.
    Called by process_group() alone: the one place groups are made and left."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world <= 1:
        return Dist(device=torch.device("cuda" if cuda else "cpu"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    return Dist(dist.get_rank(), dist.get_world_size(), torch.device(f"cuda:{local}" if cuda else "cpu"))


def current() -> Dist:
    """The process group a caller holds (process_group()), or one process without torchrun. Under
    torchrun with no group held: a one-line error, not N processes that each train alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        raise VidiffError("under torchrun, run this inside `with vidiff.distributed.process_group():` (the vidiff "
                          "commands do), so that the processes join one group and leave it together")
    return init_distributed()


def shutdown(failed: bool = False) -> None:
    """Leave the process group together. Ranks finish at different times (rank 0 still writes the last
    checkpoint and samples); a rank that tears down its gloo transport and exits while a peer is still
    talking to it, or while its own background work is still pending, can die in gloo's C++ threads
    ("terminate called without an active exception", SIGABRT), which a loaded machine makes likelier.
    The barrier drains both before anyone destroys anything.

    failed: this rank is leaving on an error. Its peers are then inside some other collective and would
    never reach a barrier, so it must not wait for them: it leaves at once, and its exit tells torchrun
    to stop the others."""
    if dist.is_initialized():
        if not failed:
            dist.barrier()
        dist.destroy_process_group()


@contextmanager
def process_group() -> Iterator[Dist]:
    """The process group of a command (one process without torchrun), left together on success and
    at once on an error, which then propagates."""
    d = init_distributed()
    try:
        yield d
    except BaseException:
        shutdown(failed=True)
        raise
    shutdown()


def mean(value: float, d: Dist) -> float:
    """Average a Python number over ranks (every rank gets the result)."""
    if not d.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.item() / d.world


def mean_tensor(value: torch.Tensor, d: Dist) -> torch.Tensor:
    """Average a tensor over ranks where it lives (no host sync)."""
    if not d.enabled:
        return value
    value = value / d.world
    dist.all_reduce(value)
    return value


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def gather_objects(items: list, d: Dist) -> list:
    """Concatenate each rank's list on every rank, in rank order."""
    if not d.enabled:
        return items
    out = [None] * d.world
    dist.all_gather_object(out, items)
    return [x for part in out for x in part]
