"""Which synthetic clips serve which purpose. Clip i of a dataset is a pure function of (data seed, i),
so disjoint index ranges are disjoint data: training streams count up from 0, and the ranges below
lie far beyond any training run."""

LATENT_SCALE = 10**8                 # clips a latent run encodes to measure its latent scale
HELD_OUT = 10**9                     # prompts for training-time samples and for evaluation
FVD_REFERENCE = HELD_OUT + 10**6     # ground-truth clips FVD-shapes compares against, disjoint from HELD_OUT's
