"""The data half of the lineage through both orchestrators, on the smoke profile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np

from anomseer import datasets
from anomseer.checks import check_images, check_series, check_traces

REPO = Path(__file__).resolve().parents[1]
DATA_STAGES = ["synthetic_series", "rendered_images", "expert_traces"]


def test_smoke_data_stages_write_what_the_checks_expect(smoke_root):
    assert check_series(smoke_root) == []
    assert check_images(smoke_root) == []
    assert check_traces(smoke_root) == []
    summary = json.loads((smoke_root / "data/series/summary.json").read_text())
    assert summary["splits"]["train"]["n"] == 2 * 8
    rows = datasets.training_rows(smoke_root, "train")
    assert all(Path(r["image"]).exists() and r["completion"].startswith("<think>") for r in rows)


def test_checks_catch_broken_data(smoke_root, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(smoke_root, root)
    next(datasets.image_dir(root, "eval").glob("*.png")).unlink()
    assert any("missing image" in p for p in check_images(root))
    path = datasets.traces_path(root, "train")
    rows = datasets.read_jsonl(path)
    rows[0]["verified"] = False
    datasets.write_jsonl(path, rows)
    assert any("does not verify" in p for p in check_traces(root))


def test_data_stage_outputs_are_byte_identical_across_runs(smoke_root, tmp_path):
    """A rerun writes the same bytes (run_info.json aside), so DVC sees the same hashes and
    reruns nothing downstream."""
    from anomseer.config import load_params
    from anomseer.stages import RUN_INFO, run_stage

    params = load_params(smoke_root / "params.yaml")
    summaries = {name: run_stage(name, params, tmp_path) for name in DATA_STAGES}
    assert summaries["synthetic_series"]["splits"]["train"]["series_per_s"] > 0  # still reported
    for out in ("series", "images", "traces"):
        def files(root):
            base = root / "data" / out
            return {p.relative_to(base): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file() and p.name != RUN_INFO}

        assert files(tmp_path) == files(smoke_root), out
        assert "series_per_s" not in (tmp_path / "data" / out / "summary.json").read_text()
        assert (tmp_path / "data" / out / RUN_INFO).is_file()
    assert RUN_INFO in (REPO / ".dvcignore").read_text().split()


def test_dagster_materializes_the_data_assets_with_checks(tmp_path):
    from anomseer.config import write_params
    from orchestration.defs.assets import stage_assets
    from orchestration.defs.checks import every_trace_verifies, one_image_per_series, series_are_clean
    from orchestration.defs.resources import AnomSeerProject

    write_params("smoke", tmp_path / "params.yaml")
    selected = [a for a in stage_assets if a.key.to_user_string() in DATA_STAGES]
    result = dg.materialize(
        [*selected, series_are_clean, one_image_per_series, every_trace_verifies],
        resources={"project": AnomSeerProject(root=str(tmp_path))},
    )
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 3 and all(c.passed for c in checks)
    mats = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    assert set(mats) == set(DATA_STAGES)
    meta = mats["rendered_images"].event_specific_data.materialization.metadata
    assert "thumbnail" in meta and meta["train_count"].value == 16
    meta = mats["expert_traces"].event_specific_data.materialization.metadata
    assert "<think>" in meta["sample_trace"].value


def test_dvc_repro_runs_the_data_stages_then_nothing(tmp_path):
    """`dvc repro` in a copy of the project; a second repro finds everything up to date."""
    proj = tmp_path / "proj"
    proj.mkdir()
    for name in ("dvc.yaml", "anomseer"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, proj / name)
    from anomseer.config import write_params

    write_params("smoke", proj / "params.yaml")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", PYTHONPATH=str(proj))
    run = lambda *a: subprocess.run(["dvc", *a], cwd=proj, env=env, capture_output=True, text=True, timeout=600)
    assert run("init", "--no-scm", "-q").returncode == 0
    first = run("repro", *DATA_STAGES)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "Running stage 'synthetic_series'" in first.stdout
    values = np.load(proj / "data/series/train.npz")["values"]
    assert values.shape[0] == 16
    second = run("repro", *DATA_STAGES)
    assert second.returncode == 0, second.stderr
    assert "Running stage" not in second.stdout
    status = run("status", *DATA_STAGES)
    assert "up to date" in status.stdout


def test_split_volatile_moves_timings_and_ids_at_any_depth():
    from anomseer.stages import split_volatile

    summary = {
        "steps": 3, "wall_seconds": 1.5, "run_id": "abc",
        "history": [{"step": 1, "loss": 2.0, "seconds": 0.1}, {"step": 2, "timerpo/time_ot_s": 0.2}],
        "splits": {"eval": {"n": 2, "images_per_s": 9.0}},
    }
    stable, volatile = split_volatile(summary)
    assert stable == {"steps": 3, "history": [{"step": 1, "loss": 2.0}, {"step": 2}], "splits": {"eval": {"n": 2}}}
    assert volatile == {
        "wall_seconds": 1.5, "run_id": "abc", "history[0].seconds": 0.1,
        "history[1].timerpo/time_ot_s": 0.2, "splits.eval.images_per_s": 9.0,
    }
