"""should_promote: a pure decision with reasons; ties and missing metrics never change the champion."""

import math

from anomseer.registry import PromotionParams, should_promote


def test_first_champion_must_beat_the_best_baseline():
    ok, why = should_promote({"score": 0.6, "accuracy": 0.7, "baseline_score": 0.5}, None)
    assert ok and "baseline" in why
    ok, why = should_promote({"score": 0.5, "accuracy": 0.7, "baseline_score": 0.5}, None)
    assert not ok
    ok, why = should_promote({"score": 0.9, "accuracy": 0.9}, None)
    assert not ok and "baseline" in why


def test_challenger_must_strictly_beat_the_champion():
    champ = {"score": 0.6, "accuracy": 0.7}
    assert should_promote({"score": 0.61, "accuracy": 0.7}, champ)[0]
    assert not should_promote({"score": 0.6, "accuracy": 0.9}, champ)[0]  # tie
    assert not should_promote({"score": 0.59, "accuracy": 0.9}, champ)[0]
    assert not should_promote({"score": 0.65, "accuracy": 0.7}, champ, PromotionParams(min_improvement=0.1))[0]


def test_missing_or_nan_metrics_never_promote_or_demote():
    champ = {"score": 0.6, "accuracy": 0.7}
    assert not should_promote({"accuracy": 0.9}, champ)[0]
    assert not should_promote({"score": math.nan, "accuracy": 0.9}, champ)[0]
    assert not should_promote({"score": 0.9, "accuracy": 0.9}, {})[0]  # champion not evaluated
    assert not should_promote(None, champ)[0]
    assert not should_promote({"score": 0.9}, champ)[0]  # secondary metric missing


def test_secondary_metric_guards_against_a_collapse():
    champ = {"score": 0.6, "accuracy": 0.8}
    ok, why = should_promote({"score": 0.7, "accuracy": 0.5}, champ)
    assert not ok and "accuracy" in why
    assert should_promote({"score": 0.7, "accuracy": 0.79}, champ)[0]
