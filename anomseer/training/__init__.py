"""Training: SFT cold start and TimerPO (GRPO plus an optimal-transport grounded advantage).

The maths of TimerPO lives in plain tensor functions with no trainer dependency:
:mod:`anomseer.training.ot` (batched Sinkhorn, token marginals, grounded similarity) and
:mod:`anomseer.training.advantages` (group centring, orthogonal projection, mixing).
Import submodules directly; this package imports nothing heavy on purpose.
"""
