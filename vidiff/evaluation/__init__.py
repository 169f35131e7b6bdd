"""Evaluation of generated video: object permanence, prompt fidelity, stability and physics for the
synthetic world; flow-compensated flicker and warping error for any video."""
