"""Run under torchrun by tests/test_distributed.py: `vidiff train` whose rank 1 raises at its second
step while rank 0 goes on into that step's collectives."""
import sys

from vidiff.cli import main
from vidiff.training.trainer import Trainer

MESSAGE = "rank 1 fails on purpose"
train_step = Trainer.train_step


def failing_step(self):
    if self.dist.rank == 1 and self.step == 1:
        raise RuntimeError(MESSAGE)
    return train_step(self)


Trainer.train_step = failing_step
sys.argv[0] = "vidiff"
main()
