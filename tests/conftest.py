"""Shared fixtures: a smoke-profile project root in a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smoke_root(tmp_path_factory) -> Path:
    """A project root with a smoke params.yaml and the data stages run once (shared, read-only)."""
    from anomseer.config import load_params, write_params
    from anomseer.stages import run_stage

    root = tmp_path_factory.mktemp("smoke_project")
    write_params("smoke", root / "params.yaml")
    params = load_params(root / "params.yaml")
    for stage in ("synthetic_series", "rendered_images", "expert_traces"):
        run_stage(stage, params, root)
    return root
