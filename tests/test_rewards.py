"""The outcome reward (anomseer.rewards): R = 0.1 format + 0.2 class + 0.7 loc."""

from __future__ import annotations

import pytest

from anomseer.metrics import affiliation_pr, f1_score
from anomseer.rewards import RewardParams, batch_outcome_rewards, outcome_reward, reward_components
from anomseer.task import format_completion

KEYS = {"format", "class", "loc", "P", "R", "F1", "AffP", "AffR", "AffF1", "total"}


def test_a_perfect_completion_earns_one():
    text = format_completion("A level shift.", [(100, 120)], "global point")
    comps = reward_components(text, [(100, 120)], "global point", 1000)
    assert set(comps) == KEYS
    assert comps == dict.fromkeys(KEYS, 1.0)
    assert outcome_reward(text, [(100, 120)], "global", 1000) == 1.0


def test_a_correct_no_anomaly_answer_earns_one_whatever_the_family_label():
    text = format_completion("Nothing stands out.", [], "normal")
    # label_for gives "normal" for an empty series; a family label is accepted too.
    assert outcome_reward(text, [], "normal", 1000) == 1.0
    assert outcome_reward(text, (), "trend", 1000) == 1.0


def test_reward_is_the_weighted_sum_of_its_parts_on_the_published_example():
    text = "<think>two blips</think><answer>[[4, 5], [8, 9]]</answer><class>contextual</class>"
    comps = reward_components(text, [(3, 4), (7, 10)], "global point", 10)
    p, r = 9 / 11, 1003 / 1188
    loc = (0.5 + 0.25 + 1 / 3 + p + r + 2 * p * r / (p + r)) / 6
    assert comps["format"] == 1.0 and comps["class"] == 0.0
    assert comps["loc"] == pytest.approx(loc)
    assert comps["total"] == pytest.approx(0.1 + 0.7 * loc)


def test_a_missed_anomaly_keeps_only_format_and_a_false_alarm_keeps_only_format():
    missed = format_completion("flat", [], "normal")
    assert outcome_reward(missed, [(10, 20)], "trend", 100) == pytest.approx(0.1)
    alarm = format_completion("bump", [(10, 20)], "trend")
    assert outcome_reward(alarm, [], "normal", 100) == pytest.approx(0.1)


def test_an_unparseable_answer_scores_zero_loc_but_keeps_the_class():
    text = "<think>hmm</think><answer>somewhere in the middle</answer><class>trend</class>"
    comps = reward_components(text, [(10, 20)], "trend", 100)
    assert comps["format"] == 0.0 and comps["class"] == 1.0 and comps["loc"] == 0.0
    assert comps["total"] == pytest.approx(0.2)


def test_garbage_earns_zero():
    assert outcome_reward("I cannot see the image.", [(10, 20)], "trend", 100) == 0.0


def test_predictions_beyond_the_series_are_clipped():
    text = "<think>t</think><answer>[[90, 150]]</answer><class>trend</class>"
    comps = reward_components(text, [(90, 100)], "trend", 100)
    assert comps["P"] == 1.0 and comps["AffP"] == 1.0 and comps["total"] == 1.0


def test_affiliation_terms_come_from_the_metric():
    text = format_completion("r", [(30, 40)], "seasonal")
    comps = reward_components(text, [(35, 60)], "seasonal", 200)
    p, r = affiliation_pr([(30, 40)], [(35, 60)], 200)
    assert (comps["AffP"], comps["AffR"], comps["AffF1"]) == pytest.approx((p, r, f1_score(p, r)))


def test_custom_weights_and_their_validation():
    text = format_completion("r", [(0, 5)], "trend")
    params = RewardParams(format_weight=0.5, class_weight=0.5, loc_weight=0.0)
    assert outcome_reward(text, [(50, 60)], "trend", 100, params) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="sum to 1"):
        RewardParams(0.1, 0.2, 0.6).validate()
    with pytest.raises(ValueError, match="class_weight"):
        RewardParams(0.5, -0.2, 0.7).validate()
    with pytest.raises(ValueError, match="loc_weight"):
        RewardParams(0.1, 0.2, float("nan")).validate()
    assert RewardParams().validate() == RewardParams(0.1, 0.2, 0.7)


def test_contradictory_or_unknown_truth_raises():
    text = format_completion("r", [(0, 5)], "trend")
    with pytest.raises(ValueError, match="normal"):
        outcome_reward(text, [(0, 5)], "normal", 100)
    with pytest.raises(ValueError, match="not one of"):
        outcome_reward(text, [(0, 5)], "spike", 100)
    with pytest.raises(ValueError, match="outside"):
        outcome_reward(text, [(0, 500)], "trend", 100)


def test_batch_rewards_match_single_rewards():
    completions = [
        format_completion("a", [(10, 20)], "trend"),
        format_completion("b", [], "normal"),
        "<think>c</think><answer>[[0, 3]]</answer>",
        "nothing",
    ]
    truths = [[(12, 22)], [], [(1, 2)], [(5, 6)]]
    labels = ["trend", "normal", "global point", "seasonal"]
    lengths = [100, 100, 50, 50]
    got = batch_outcome_rewards(completions, truths, labels, lengths)
    assert got == [outcome_reward(*args) for args in zip(completions, truths, labels, lengths)]
    assert got[1] == 1.0 and got[3] == 0.0
    with pytest.raises(ValueError, match="same length"):
        batch_outcome_rewards(completions, truths, labels, lengths[:2])
