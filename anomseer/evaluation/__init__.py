"""Evaluation: run models and baselines on the eval and held-out splits, score, report."""
