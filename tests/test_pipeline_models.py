"""The model half of the lineage on the smoke profile, end to end: base model -> SFT -> TimerPO and
its ablations (MLflow runs + registered versions) -> evaluation report -> promotion -> detection
(CLI and the registered pyfunc loaded by alias)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anomseer import registry
from anomseer.config import load_params
from anomseer.stages import ABLATIONS, run_stage

MODEL_STAGES = ["base_model", "sft_checkpoint", *ABLATIONS, "evaluation_report", "promotion"]


@pytest.fixture(scope="module")
def lineage(smoke_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("models_project")
    shutil.copytree(smoke_root, root, dirs_exist_ok=True)
    params = load_params(root / "params.yaml")
    summaries = {name: run_stage(name, params, root) for name in MODEL_STAGES}
    return root, params, summaries


def test_every_model_stage_is_an_mlflow_run_and_a_registered_version(lineage):
    root, params, summaries = lineage
    from mlflow import MlflowClient

    registry.setup(root, params.tracking)
    client = MlflowClient()
    versions = client.search_model_versions(f"name='{params.tracking.registered_model}'")
    assert len(versions) == 1 + len(ABLATIONS)  # SFT + TimerPO + ablations
    for stage in ("sft_checkpoint", *ABLATIONS):
        v = registry.version_for_alias(root, params.tracking, stage)
        assert v is not None and v.tags["stage"] == stage
        run = client.get_run(v.run_id)
        assert run.data.tags["stage"] == stage
        assert run.data.metrics, f"{stage} logged no curve"
    assert summaries["timerpo_checkpoint"]["ablation"] == "none"
    sft_run = client.get_run(registry.version_for_alias(root, params.tracking, "sft_checkpoint").run_id)
    assert "loss" in sft_run.data.metrics
    tp_run = client.get_run(registry.version_for_alias(root, params.tracking, "timerpo_checkpoint").run_id)
    for key in ("reward", "timerpo.ot_cost_mean", "timerpo.beta_mean", "timerpo.frac_zero_var_groups"):
        assert key in tp_run.data.metrics, key


def test_evaluation_report_scores_models_and_baselines(lineage):
    root, _, summaries = lineage
    metrics = json.loads((root / "data/reports/metrics.json").read_text())
    for name in ("sft_checkpoint", "timerpo_checkpoint", "always_empty", "blind_expert", "baseline_best"):
        assert "eval" in metrics[name], name
    for name in ("timerpo_checkpoint", "always_empty"):
        assert 0.0 <= metrics[name]["eval"]["aff_f1"] <= 1.0
    report = (root / "data/reports/report.md").read_text()
    assert "published" in report.lower() and "always_empty" in report
    assert (root / "data/reports/figures/confusion.png").stat().st_size > 1000
    assert Path(summaries["evaluation_report"]["report_path"]).exists()


def test_promotion_records_its_reason_and_never_promotes_a_loser(lineage):
    root, params, summaries = lineage
    decision = summaries["promotion"]
    assert decision["candidate"] == "timerpo_checkpoint"
    version = registry.version_for_alias(root, params.tracking, registry.CHALLENGER)
    assert version.tags["promotion.reason"] == decision["reason"]
    champion = registry.version_for_alias(root, params.tracking, registry.CHAMPION)
    metrics = json.loads((root / "data/reports/metrics.json").read_text())
    beats = metrics["timerpo_checkpoint"]["eval"]["score"] > metrics["baseline_best"]["eval"]["score"]
    assert decision["promoted"] == beats
    assert (champion is not None) == beats


def test_registered_pyfunc_loads_by_alias_and_predicts(lineage):
    import mlflow
    import pandas as pd

    root, params, _ = lineage
    registry.setup(root, params.tracking)
    model = mlflow.pyfunc.load_model(f"models:/{params.tracking.registered_model}@timerpo_checkpoint")
    series = np.sin(np.arange(250) * 0.2)
    series[100:110] += 4
    out = model.predict(pd.DataFrame({"values": [series.tolist(), json.dumps(series[:120].tolist())]}))
    assert list(out.columns) == ["intervals", "label", "reasoning", "well_formed"]
    assert len(out) == 2
    for raw, label in zip(out["intervals"], out["label"]):
        assert isinstance(json.loads(raw), list)
        assert label in ("contextual point", "global point", "seasonal", "trend", "shapelet", "normal")


def _detect(root, *args):
    return subprocess.run(
        [sys.executable, "-m", "anomseer.cli", "detect", *args, "--root", str(root)],
        capture_output=True, text=True, timeout=300,
    )


def test_detect_cli_explains_a_long_csv_with_windows(lineage, tmp_path):
    root, _, _ = lineage
    csv = tmp_path / "mine.csv"
    t = np.arange(600)
    csv.write_text("time,value\n" + "\n".join(f"{i},{v:.5f}" for i, v in zip(t, np.sin(t * 0.1))))
    proc = _detect(root, str(csv), "--column", "value", "--model", "models:/anomseer@timerpo_checkpoint", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["n_points"] == 600 and result["windows"] >= 3
    assert all(0 <= s < e <= 600 for s, e in result["intervals"])
    assert Path(result["plot"]).exists()


@pytest.mark.parametrize(
    "content, extra, message",
    [
        (None, [], "no such file"),
        ("a,b\n1,2\n3,4\n", [], "choose one with --column"),
        ("name\nx\ny\n", [], "no numeric column"),
        ("v\n" + "\n".join(["1.0"] * 40), [], "constant"),
        ("v\n1\n2\n", [], "at least"),
        ("v\n" + "\n".join(str(i % 7) for i in range(30)) + "\nnan\n", [], "NaN/inf"),
        ("v\n" + "\n".join(str(i % 7) for i in range(30)), ["--model", "models:/anomseer@nonexistent"], "cannot load"),
    ],
)
def test_detect_cli_rejects_bad_input_clearly(lineage, tmp_path, content, extra, message):
    root, _, _ = lineage
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_text(content)
    proc = _detect(root, str(path), *extra)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dagster_promotion_asset_runs_the_same_stage_with_metadata(lineage):
    import dagster as dg

    from orchestration.defs.assets import stage_assets
    from orchestration.defs.resources import AnomSeerProject

    root, _, summaries = lineage
    promotion = next(a for a in stage_assets if a.key.to_user_string() == "promotion")
    result = dg.materialize([promotion], resources={"project": AnomSeerProject(root=str(root))})
    assert result.success
    meta = result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    assert meta["candidate"].value == "timerpo_checkpoint"
    assert meta["reason"].value  # why it was (not) promoted is visible in the UI


def test_base_model_is_vision_pretrained_and_warmed_up_and_leaves_no_work_files(lineage):
    root, params, summaries = lineage
    base = summaries["base_model"]
    assert params.base.vision_epochs >= 1 and params.base.align_steps >= 1
    assert len(base["vision_history"]) == params.base.vision_epochs
    assert {"loss", "class_accuracy", "column_f1"} <= set(base["vision_pretraining"])
    assert base["alignment"]["steps"] == params.base.align_steps
    out = root / "data/models/base_model"
    assert not (out / "work").exists()
    assert (out / "model.safetensors").is_file() and (out / "anomseer_tiny_params.json").is_file()


def test_timerpo_sweep_scores_like_the_report_and_resumes(lineage, tmp_path):
    from anomseer.evaluation.sweep import format_table, run_sweep, setting_name

    root, params, summaries = lineage
    grid = [{"max_steps": 1}, {"max_steps": 1, "learning_rate": 1e-6}]
    rows = run_sweep(root, params, grid, tmp_path / "sweep", say=lambda m: None)
    assert [r["name"] for r in rows] == ["sft_checkpoint", *map(setting_name, grid)]
    assert all(0 <= r[k] <= 1 for r in rows for k in ("accuracy", "aff_f1", "well_formed"))
    assert (tmp_path / "sweep" / setting_name(grid[0]) / "model.safetensors").is_file()
    # The reference row is the evaluation report's SFT row (same records, same greedy decoding).
    metrics = json.loads((root / "data/reports/metrics.json").read_text())
    assert rows[0]["accuracy"] == pytest.approx(metrics["sft_checkpoint"]["eval"]["accuracy"])
    assert rows[0]["aff_f1"] == pytest.approx(metrics["sft_checkpoint"]["eval"]["aff_f1"])
    sft = metrics["sft_checkpoint"]["eval"]
    groups = [sft[f"aff_f1_{g}"] for g in ("freq", "trend", "range", "point") if f"aff_f1_{g}" in sft]
    assert groups and rows[0]["aff_f1_groups"] == pytest.approx(sum(groups) / len(groups))  # the paper's avg F1
    assert "paper groups' avg" in format_table(rows)
    said = []
    again = run_sweep(root, params, grid, tmp_path / "sweep", say=said.append)
    assert again == rows and sum("done earlier" in m for m in said) == 2
    with pytest.raises(ValueError, match="learning_rte"):
        run_sweep(root, params, [{"learning_rte": 1e-6}], tmp_path / "sweep")


def test_sweep_cli_rejects_a_bad_grid_clearly(lineage):
    root, _, _ = lineage
    proc = subprocess.run(
        [sys.executable, "-m", "anomseer.cli", "sweep-timerpo", "--root", str(root), "--grid", "[{learning_rate: 1}]"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2 and "--grid is not valid JSON" in proc.stderr and "Traceback" not in proc.stderr


def test_model_stages_rerun_byte_identically(lineage, smoke_root, tmp_path):
    """Same inputs, same params -> the same files (run_info.json aside), so DVC's hash of the
    model folder is stable and a rerun upstream does not force the stages below it to rerun."""
    from anomseer.stages import RUN_INFO

    root, params, _ = lineage
    shutil.copytree(smoke_root, tmp_path, dirs_exist_ok=True)
    for name in ("base_model", "sft_checkpoint"):
        run_stage(name, params, tmp_path)

        def files(base):
            folder = base / "data" / "models" / name
            return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != RUN_INFO}

        assert files(tmp_path) == files(root), name
