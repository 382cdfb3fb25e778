"""Evaluation: baselines, scoring with bootstrap CIs, reasoning metrics, the report and evaluate()."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from anomseer import datasets
from anomseer.evaluation import baselines as bl
from anomseer.evaluation.params import EvaluationParams
from anomseer.evaluation.reasoning import claim_verification, tokenize, word_shift
from anomseer.evaluation.scoring import METRICS, UNPARSEABLE, bootstrap_means, score_records
from anomseer.metrics import bootstrap_ci, localization_scores
from anomseer.series import Sample, generate
from anomseer.series.taxonomy import LABELS, NORMAL

SMALL_RENDER = dict(width_px=224, height_px=56)
FAST = EvaluationParams(n_boot=50, n_examples=3, max_new_tokens=8, batch_size=4)


# --------------------------------------------------------------------------------------------
# helpers


def _sample(values, intervals=(), label=NORMAL, family="range", uid="u"):
    return Sample(np.asarray(values, dtype=np.float64), tuple(intervals), label, family, uid)


def _rec(uid, true, pred, true_label, pred_label, length=100, family="range", well_formed=True):
    return {
        "uid": uid,
        "family": family,
        "split": "eval",
        "true_intervals": true,
        "true_label": true_label,
        "length": length,
        "pred_intervals": pred,
        "pred_label": pred_label,
        "well_formed": well_formed,
    }


def _valid(intervals, label, length):
    previous = 0
    for s, e in intervals:
        assert isinstance(s, int) and isinstance(e, int)
        assert previous <= s < e <= length
        previous = e + 1  # disjoint and not touching (merged)
    assert label in LABELS
    assert (label == NORMAL) == (len(intervals) == 0)


@pytest.fixture(scope="module")
def mixed_samples():
    out = []
    for family in ("range", "point", "freq", "trend", "vta-shapelet", "vta-global"):
        for i, s in enumerate(generate(family, 1, 7)):
            out.append(Sample(s.values, s.intervals, s.label, s.family, uid=f"t-{family}-{i}"))
    return out


# --------------------------------------------------------------------------------------------
# baselines


def test_every_baseline_is_deterministic_and_answers_valid_intervals(mixed_samples):
    detectors = bl.label_free_baselines(low_pct=2.0, high_pct=98.0, seed=3)
    for name, detect in detectors.items():
        for s in mixed_samples:
            first, again = detect(s), detect(s)
            assert first == again, name
            _valid(first[0], first[1], s.length)
    assert bl.always_empty(mixed_samples[0]) == ([], NORMAL)


def test_random_intervals_depend_on_seed_and_uid_not_on_call_order(mixed_samples):
    forward = [bl.random_intervals(s, seed=5) for s in mixed_samples]
    backward = [bl.random_intervals(s, seed=5) for s in reversed(mixed_samples)][::-1]
    assert forward == backward
    other_seed = [bl.random_intervals(s, seed=6) for s in mixed_samples]
    assert forward != other_seed
    counts = {len(iv) for iv, _ in (bl.random_intervals(_sample(np.zeros(500), uid=f"x{i}"), 0) for i in range(60))}
    assert counts <= {0, 1, 2, 3} and 0 in counts and len(counts) >= 3


def test_percentile_threshold_flags_exactly_the_extremes_and_merges_runs():
    values = np.zeros(100)
    values[10:12] = 5.0
    values[50] = -5.0
    # Sorted: -5, 97 zeros, 5, 5 -> 2nd percentile 0, 98th percentile 0.1: flags 10, 11 and 50.
    intervals, label = bl.percentile_threshold(_sample(values), 2.0, 98.0)
    assert intervals == [(10, 12), (50, 51)]
    assert label == "global point"
    assert bl.percentile_threshold(_sample(np.full(50, 3.0)), 2.0, 98.0) == ([], NORMAL)
    with pytest.raises(ValueError, match="low_pct"):
        bl.percentile_threshold(_sample(values), 60.0, 40.0)


def test_blind_expert_matches_blind_detect_and_survives_a_degenerate_series(mixed_samples):
    from anomseer.expert import blind_detect

    s = mixed_samples[0]
    intervals, label = blind_detect(s.values)
    assert bl.blind_expert(s) == ([tuple(iv) for iv in intervals], label)
    broken = _sample([1.0, np.nan, 2.0, 3.0] * 50)
    assert bl.blind_expert(broken) == ([], NORMAL)


def test_class_prior_localizer_answers_each_class_median_first_interval():
    train = [
        _sample(np.zeros(1000), [(100, 150), (600, 700)], "trend", "trend"),
        _sample(np.zeros(1000), [(200, 260)], "trend", "trend"),
        _sample(np.zeros(1000), [(300, 340)], "trend", "trend"),
        _sample(np.zeros(1000), [(900, 910)], "global point", "range"),
        _sample(np.zeros(1000), [], NORMAL, "range"),
    ]
    loc = bl.ClassPriorLocalizer().fit(train)
    # Trend: starts 0.1, 0.2, 0.3 -> median 0.2; first lengths 0.05, 0.06, 0.04 -> median 0.05.
    assert loc.predict("trend", 1000) == [(200, 250)]
    assert loc.predict("trend", 400) == [(80, 100)]
    assert loc.predict("global", 1000) == [(900, 910)]
    assert loc.predict(NORMAL, 1000) == []
    # Unseen class: medians over all four anomalous series' first intervals (starts .1 .2 .3 .9).
    assert loc.predict("shapelet", 1000) == [(250, 295)]
    with pytest.raises(ValueError, match="unknown label"):
        loc.predict("wobble", 1000)
    with pytest.raises(ValueError, match="not fitted"):
        bl.ClassPriorLocalizer().predict("trend", 100)
    with pytest.raises(ValueError, match="at least one anomaly"):
        bl.ClassPriorLocalizer().fit([_sample(np.zeros(10))])


# --------------------------------------------------------------------------------------------
# scoring


def test_perfect_predictions_score_one_everywhere_with_a_degenerate_ci():
    records = [
        _rec("a", [[10, 20]], [[10, 20]], "global point", "global point"),
        _rec("b", [], [], NORMAL, NORMAL),
        _rec("c", [[0, 5], [50, 60]], [[0, 5], [50, 60]], "contextual point", "contextual", family="point"),
    ]
    result = score_records(records, n_boot=200, seed=1)
    for group in result["groups"].values():
        for metric in METRICS:
            assert group[metric] == {"mean": 1.0, "low": 1.0, "high": 1.0}
    assert result["score"] == 1.0
    assert result["groups"]["overall"]["n"] == 3 and result["groups"]["anomalous"]["n"] == 2


def test_always_empty_scores_one_on_normal_series_and_zero_on_anomalous_ones():
    normal = [_rec(f"n{i}", [], [], NORMAL, NORMAL) for i in range(5)]
    anomalous = [_rec(f"a{i}", [[i, i + 10]], [], "trend", NORMAL, family="trend") for i in range(5)]
    assert score_records(normal, 100)["groups"]["overall"]["AffF1"]["mean"] == 1.0
    on_anomalous = score_records(anomalous, 100)["groups"]["overall"]
    assert on_anomalous["AffF1"]["mean"] == 0.0 and on_anomalous["accuracy"]["mean"] == 0.0
    mixed = score_records(normal + anomalous, 100)
    assert mixed["groups"]["overall"]["AffF1"]["mean"] == 0.5
    assert mixed["groups"]["anomalous"]["AffF1"]["mean"] == 0.0
    assert mixed["score"] == 0.5


def test_unparseable_answers_count_zero_and_lower_the_well_formed_rate():
    good = [_rec(f"g{i}", [[10, 20]], [[10, 20]], "global point", "global point") for i in range(3)]
    bad = _rec("bad", [[10, 20]], None, "global point", None, well_formed=False)
    overall = score_records(good + [bad], 100)["groups"]["overall"]
    for metric in ("accuracy", "P", "R", "F1", "AffP", "AffR", "AffF1", "well_formed", "score"):
        assert overall[metric]["mean"] == pytest.approx(0.75), metric
    assert overall["n"] == 4


def test_partial_overlap_gives_the_exact_point_and_affiliation_values():
    rec = _rec("p", [[0, 20]], [[0, 10]], "global point", "trend", length=100)
    overall = score_records([rec], 20)["groups"]["overall"]
    assert overall["P"]["mean"] == 1.0 and overall["R"]["mean"] == 0.5
    assert overall["F1"]["mean"] == pytest.approx(2 / 3)
    expected = localization_scores([(0, 10)], [(0, 20)], 100)["AffF1"]
    assert overall["AffF1"]["mean"] == pytest.approx(expected)
    assert overall["accuracy"]["mean"] == 0.0
    assert overall["score"]["mean"] == pytest.approx(0.5 * expected)


def test_confidence_intervals_contain_the_mean_and_agree_with_the_reference_bootstrap():
    rng = np.random.default_rng(0)
    records = []
    for i in range(200):
        s = int(rng.integers(0, 80))
        pred = [[s, s + int(rng.integers(1, 20))]] if rng.random() < 0.8 else []
        records.append(_rec(f"r{i}", [[40, 60]], pred, "trend", "trend" if rng.random() < 0.6 else "seasonal", family="trend"))
    result = score_records(records, n_boot=2000, seed=3)
    for group in result["groups"].values():
        for metric in METRICS:
            assert group[metric]["low"] <= group[metric]["mean"] <= group[metric]["high"]
    aff = [localization_scores(r["pred_intervals"], r["true_intervals"], 100)["AffF1"] for r in records]
    mean, low, high = bootstrap_ci(aff, n_boot=2000, seed=9)
    ours = result["groups"]["overall"]["AffF1"]
    assert ours["mean"] == pytest.approx(mean)
    assert ours["low"] == pytest.approx(low, abs=0.015) and ours["high"] == pytest.approx(high, abs=0.015)
    assert ours["high"] - ours["low"] > 0.02  # a real interval, not a point


def test_bootstrap_means_equal_explicit_resampling_counts():
    values = np.arange(12, dtype=float).reshape(6, 2)
    boot = bootstrap_means(values, n_boot=7, seed=4)
    assert boot.shape == (7, 2)
    # Each resample mean of column 1 is column 0's mean + 1 (the same rows were drawn for both).
    np.testing.assert_allclose(boot[:, 1], boot[:, 0] + 1)
    assert np.all((boot >= 0) & (boot <= 11))


def test_confusion_matrix_counts_true_by_predicted_with_an_unparseable_column():
    records = [
        _rec("a", [[1, 2]], [[1, 2]], "global point", "global"),
        _rec("b", [[1, 2]], [[1, 2]], "global point", "trend"),
        _rec("c", [[1, 2]], None, "global point", None),
        _rec("d", [], [], NORMAL, NORMAL),
        _rec("e", [], [], NORMAL, NORMAL),
    ]
    conf = score_records(records, 10)["confusion"]
    assert conf["pred"][-1] == UNPARSEABLE
    counts = {(t, p): c for t, row in zip(conf["true"], conf["counts"]) for p, c in zip(conf["pred"], row) if c}
    assert counts == {("global point", "global point"): 1, ("global point", "trend"): 1, ("global point", UNPARSEABLE): 1, (NORMAL, NORMAL): 2}


def test_groups_follow_the_paper_and_put_heldout_types_together():
    records = [
        _rec("a", [], [], NORMAL, NORMAL, family="noisy-freq"),
        _rec("b", [[1, 3]], [], "seasonal", NORMAL, family="freq"),
        _rec("c", [[1, 3]], [[1, 3]], "shapelet", "shapelet", family="vta-shapelet"),
        _rec("d", [[1, 3]], [[1, 3]], "trend", "trend", family="vta-trend"),
    ]
    groups = score_records(records, 10)["groups"]
    assert groups["paper:freq"]["n"] == 2 and groups["paper:heldout"]["n"] == 2
    assert groups["paper:freq"]["AffF1"]["mean"] == 0.5 and groups["paper:heldout"]["AffF1"]["mean"] == 1.0
    assert groups["family:noisy-freq"]["n"] == 1 and groups["anomalous"]["n"] == 3


def test_bad_records_are_refused_with_the_uid_named():
    with pytest.raises(ValueError, match="at least one record"):
        score_records([], 10)
    with pytest.raises(ValueError, match="lacks keys"):
        score_records([{"uid": "x"}], 10)
    with pytest.raises(ValueError, match="'z'"):
        score_records([_rec("z", [[1, 500]], [], "trend", NORMAL)], 10)


# --------------------------------------------------------------------------------------------
# reasoning


def test_word_shift_finds_an_injected_word_and_collapses_numbers():
    assert tokenize("Max |z| 6.12 at 415, above 5. Trend's slope") == ["max", "z", "<num>", "at", "<num>", "above", "<num>", "trend's", "slope"]
    base = ["the gradient is stable near 120 and the period holds"] * 20
    shifted = [t + " discord discord" for t in base]
    rows = word_shift(base, shifted, top=5)
    assert rows[0]["word"] == "discord"
    assert rows[0]["freq_a"] == 0.0 and rows[0]["count_b"] == 40
    assert rows[0]["freq_b"] == pytest.approx(40 / (20 * 12))
    assert rows[0]["shift"] == pytest.approx(rows[0]["freq_b"])
    assert word_shift([], [None], top=3) == []


def test_claim_verification_confirms_expert_traces_and_catches_a_wrong_number():
    from anomseer.expert import count_claims, write_trace

    samples = [s for s in generate("point", 6, 42) if s.intervals][:2] + generate("range", 2, 42)
    samples = [Sample(s.values, s.intervals, s.label, s.family, uid=f"s{i}") for i, s in enumerate(samples)]
    by_uid = {s.uid: s for s in samples}
    traces = [write_trace(s) for s in samples]
    records = [{"uid": s.uid, "reasoning": t} for s, t in zip(samples, traces)]
    expected = [count_claims(t, s.values) for s, t in zip(samples, traces)]
    result = claim_verification(records + [{"uid": "s0", "reasoning": "no numbers here"}], by_uid)
    assert result["n_claims"] == sum(n for n, _ in expected) > 0
    assert result["verified_share"] == 1.0
    assert result["share_with_claims"] == pytest.approx(len(samples) / (len(samples) + 1))
    # Corrupt every "max |z| X" value: those claims must now fail.
    import re

    wrong = [re.sub(r"max \|z\| \d+\.\d+", "max |z| 99.99", t) for t in traces]
    corrupted = claim_verification([{"uid": s.uid, "reasoning": t} for s, t in zip(samples, wrong)], by_uid)
    assert corrupted["n_claims"] == result["n_claims"]
    assert corrupted["n_verified"] <= result["n_verified"] - len(samples)
    assert claim_verification([{"uid": "s0", "reasoning": None}], by_uid)["verified_share"] is None
    with pytest.raises(ValueError, match="no series"):
        claim_verification([{"uid": "nope", "reasoning": "max |z| 1.00 at 3"}], by_uid)


# --------------------------------------------------------------------------------------------
# evaluate() end to end on a tiny synthetic root


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    from anomseer.render import RenderParams, render_many
    from anomseer.series.io import save_samples

    root = tmp_path_factory.mktemp("eval_root")
    data = datasets.DataParams(train_per_family=2, eval_per_family=1, heldout_per_type=1, heldout_length=400)
    for split in datasets.SPLITS:
        samples = datasets.build_split(split, data)
        save_samples(samples, datasets.series_path(root, split))
        if split != "train":
            paths = [datasets.image_path(root, split, s.uid) for s in samples]
            render_many([s.values for s in samples], paths, RenderParams(**SMALL_RENDER), workers=1)
    return root


def _numbers_only(tree) -> bool:
    if isinstance(tree, dict):
        return all(isinstance(k, str) and _numbers_only(v) for k, v in tree.items())
    return isinstance(tree, (int, float)) and not isinstance(tree, bool) and math.isfinite(tree)


def test_evaluate_with_baselines_only_writes_metrics_results_and_report(tiny_root, tmp_path):
    messages = []
    out = tmp_path / "out"
    result = evaluate_call(tiny_root, {"sft_checkpoint": tmp_path / "missing_model"}, out, messages.append)
    assert "sft_checkpoint" in result["skipped"] and "no model folder" in result["skipped"]["sft_checkpoint"]
    assert any("SKIPPED model 'sft_checkpoint'" in m for m in messages)

    metrics = json.loads((out / "metrics.json").read_text())
    assert _numbers_only(metrics)
    assert set(metrics) == {"always_empty", "blind_expert", "random_intervals", "percentile_threshold", "oracle_class+class_prior", "baseline_best"}
    n_eval = len(datasets.load_split(tiny_root, "eval"))
    normal_share = sum(not s.intervals for s in datasets.load_split(tiny_root, "eval")) / n_eval
    assert metrics["always_empty"]["eval"]["aff_f1"] == pytest.approx(normal_share)
    assert metrics["always_empty"]["eval"]["accuracy"] == pytest.approx(normal_share)
    assert metrics["always_empty"]["heldout"]["aff_f1"] == 0.0  # every held-out series is anomalous
    assert metrics["oracle_class+class_prior"]["eval"]["accuracy"] == 1.0
    for split in ("eval", "heldout"):
        best = metrics["baseline_best"][split]["score"]
        assert best == max(metrics[b][split]["score"] for b in ("always_empty", "blind_expert", "random_intervals", "percentile_threshold"))
        assert metrics["always_empty"][split]["n"] == len(datasets.load_split(tiny_root, split))

    results = json.loads((out / "results.json").read_text())
    assert results["scores"]["blind_expert"]["eval"]["confusion"]["pred"][-1] == UNPARSEABLE
    report = (out / "report.md").read_text()
    assert "Models not evaluated" in report and "sft_checkpoint" in report
    assert "published" in report and "84.4" in report  # the reference table, marked as such
    assert "always_empty" in report and "normal share" in report
    for name in ("per_family_eval.png", "per_family_heldout.png", "confusion.png", "examples.png"):
        assert (out / "figures" / name).stat().st_size > 1000, name
    rows = (out / "plots" / "per_family.csv").read_text().splitlines()
    assert rows[0] == "model,family,aff_f1,accuracy" and len(rows) > 10
    assert (out / "plots" / "learning_curves.csv").read_text().startswith("model,step,metric,value")


def evaluate_call(root, models, out, progress=None, params=FAST, **kwargs):
    from anomseer.evaluation.run import evaluate

    return evaluate(root, params, models, out, progress=progress or (lambda m: None), **kwargs)


def _skip_report(monkeypatch):
    """The report is tested once; other evaluate() tests skip its figures to stay fast."""
    import anomseer.evaluation.report as report

    def fake_write_report(results, out_dir, **kwargs):
        path = Path(out_dir) / "report.md"
        path.write_text("stub\n")
        return path

    monkeypatch.setattr(report, "write_report", fake_write_report)


def _fake_model_dir(path: Path, weights: bytes = b"weights-v1") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(weights)
    history = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}, {"step": 2, "token_accuracy": 0.3}]
    (path / "history.json").write_text(json.dumps(history))
    return path


def test_model_completions_are_scored_cached_and_resumed(tiny_root, tmp_path, monkeypatch):
    """A fake model (answers "normal" with one checkable claim) exercises the model path without weights."""
    import anomseer.modeling.generation as generation
    from anomseer.evaluation import run

    prompts_seen = []

    def fake_generate(model, processor, images, prompts, **kwargs):
        assert len(images) == len(prompts) and all(img.size == (224, 56) for img in images)
        prompts_seen.extend(prompts)
        return ["<think>Global scan: max |z| 0.00 at 0, below 5.</think><answer>[]</answer><class>normal</class>"] * len(prompts)

    monkeypatch.setattr(generation, "generate_completions", fake_generate)
    monkeypatch.setattr(run._ModelRunner, "_load", lambda self, name, path: ("model", "processor"))
    model = _fake_model_dir(tmp_path / "sft")
    out = tmp_path / "out"
    n_total = len(datasets.load_split(tiny_root, "eval")) + len(datasets.load_split(tiny_root, "heldout"))

    result = evaluate_call(tiny_root, {"sft": model}, out)
    assert len(prompts_seen) == n_total
    m = result["metrics"]
    for key in ("accuracy", "aff_f1", "f1", "score"):
        assert m["sft"]["eval"][key] == pytest.approx(m["always_empty"]["eval"][key])
    assert m["sft"]["eval"]["well_formed"] == 1.0
    assert result["reasoning"]["sft"]["eval"]["n_claims"] == len(datasets.load_split(tiny_root, "eval"))
    assert result["reasoning"]["sft"]["eval"]["verified_share"] == 0.0  # max |z| is never 0.00 at index 0
    assert m["sft+class_prior"]["eval"]["aff_f1"] == pytest.approx(m["sft"]["eval"]["aff_f1"])  # all "normal"
    # Promotion reads the model's flat metrics plus the best baseline's: "always normal" is no champion.
    from anomseer.registry import should_promote

    challenger = run.promotion_metrics(m, "sft")
    assert challenger["baseline_score"] == m["baseline_best"]["eval"]["score"] >= m["blind_expert"]["eval"]["score"]
    assert not should_promote(challenger, None)[0]
    assert (out / "figures" / "learning_curves.png").stat().st_size > 1000
    curves = (out / "plots" / "learning_curves.csv").read_text().splitlines()
    assert "sft,1.0,loss,2.0" in curves and any(",token_accuracy," in line for line in curves)

    _skip_report(monkeypatch)
    evaluate_call(tiny_root, {"sft": model}, out)  # everything cached: no generation
    assert len(prompts_seen) == n_total

    cache = out / "completions" / "sft__eval.jsonl"
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:2]) + "\n" + lines[2][:10])  # header, one row, a torn row
    evaluate_call(tiny_root, {"sft": model}, out)  # resumes: only the missing eval chunk reruns
    assert n_total < len(prompts_seen) <= n_total + len(lines) - 1

    before = len(prompts_seen)
    _fake_model_dir(model, weights=b"weights-v2")  # new weights: both splits regenerate
    evaluate_call(tiny_root, {"sft": model}, out)
    assert len(prompts_seen) == before + n_total


def test_evaluate_refuses_a_model_name_taken_by_a_baseline(tiny_root, tmp_path):
    with pytest.raises(ValueError, match="taken"):
        evaluate_call(tiny_root, {"always_empty": tmp_path}, tmp_path / "out")


def test_a_real_micro_model_runs_through_evaluate(tiny_root, tmp_path, monkeypatch):
    """The real loader and generate_completions on an untrained micro Qwen2.5-VL: its 8-token
    answers are unparseable, so it must score 0 on localization and well-formedness."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from _tiny_fixtures import MICRO_PARAMS

    from anomseer.modeling.tiny import build_tiny_model
    from anomseer.task import build_prompt

    corpus = [build_prompt(1000), build_prompt(400), "<think>flat</think><answer>[[1, 2]]</answer><class>trend</class>"]
    model = build_tiny_model(tmp_path / "micro", corpus, MICRO_PARAMS)
    out = tmp_path / "out"
    _skip_report(monkeypatch)
    params = EvaluationParams(n_boot=20, n_examples=2, max_new_tokens=8, batch_size=8)
    result = evaluate_call(tiny_root, {"micro": model}, out, params=params, splits=("eval",))
    m = result["metrics"]["micro"]["eval"]
    assert m["n"] == len(datasets.load_split(tiny_root, "eval"))
    assert 0.0 <= m["score"] <= 1.0 and m["well_formed"] == 0.0
    rows = (out / "completions" / "micro__eval.jsonl").read_text().splitlines()
    assert len(rows) == m["n"] + 1 and json.loads(rows[0])["fingerprint"]


def test_paper_average_is_the_mean_of_the_groups_present():
    from anomseer.evaluation.scoring import paper_average

    assert paper_average({"freq": 0.2, "trend": 0.4, "range": None, "point": 0.9, "heldout": 0.0}) == pytest.approx(0.5)
    assert paper_average({"heldout": 1.0}) is None
