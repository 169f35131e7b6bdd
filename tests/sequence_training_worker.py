"""Run under torchrun by tests/test_sequence_parallel.py (or alone, as the one-process reference): the
gradients of one training micro-batch of a Trainer (train.parallel from the config), after DDP's
averaging, saved by rank 0. Adam normalises an N-times gradient away, so losses and weights alone
would not show one."""
import json
import os
import sys
from contextlib import nullcontext

import torch

from vidiff.config import config_from_dict
from vidiff.distributed import process_group
from vidiff.training import Trainer
from vidiff.training.trainer import step_generator

values, run, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
with process_group():
    trainer = Trainer(config_from_dict(values), run, progress=False)
    loss, _ = trainer.task.loss(trainer.net, trainer.batch(0), step_generator(trainer.cfg.train.seed, 0), trainer.part,
                                nullcontext())
    loss.backward()
    if trainer.dist.main:
        torch.save({n: p.grad for n, p in trainer.model.named_parameters() if p.grad is not None}, out)
# gloo's threads can still abort an exiting interpreter on a loaded machine ("terminate called without an
# active exception", as in tests/sequence_parallel_worker.py); the group is left and the result written
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
