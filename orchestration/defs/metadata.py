"""Turn a stage summary into the metadata a user wants to see in the Dagster UI."""

from __future__ import annotations

import base64
from pathlib import Path

import dagster as dg


def _thumbnail_md(path: Path, title: str) -> dg.MetadataValue:
    data = base64.b64encode(path.read_bytes()).decode()
    return dg.MetadataValue.md(f"**{title}**\n\n![{title}](data:image/png;base64,{data})")


def stage_metadata(name: str, summary: dict, root: Path) -> dict:
    """Generic fields for every stage plus a few stage-specific ones (thumbnail, sample trace)."""
    from anomseer import datasets

    meta: dict = {"summary": dg.MetadataValue.json(summary)}
    splits = summary.get("splits", {})
    for split, info in splits.items():
        meta[f"{split}_count"] = int(info.get("n", 0))
    if name == "synthetic_series":
        for split, info in splits.items():
            meta[f"{split}_per_label"] = dg.MetadataValue.json(info["per_label"])
            meta[f"{split}_per_family"] = dg.MetadataValue.json(info["per_family"])
    elif name == "rendered_images":
        first = sorted(datasets.image_dir(root, "train").glob("*.png"))
        if first:
            meta["thumbnail"] = _thumbnail_md(first[0], first[0].stem)
        meta["images_per_s"] = float(splits.get("train", {}).get("images_per_s", 0.0))
    elif name == "expert_traces":
        rows = datasets.read_jsonl(datasets.traces_path(root, "train"))
        sample = next((r for r in rows if r["label"] != "normal"), rows[0] if rows else None)
        if sample:
            meta["sample_trace"] = dg.MetadataValue.md(f"`{sample['uid']}` ({sample['label']})\n\n```\n{sample['completion']}\n```")
        meta["verified"] = dg.MetadataValue.json({s: f"{i['verified']}/{i['n']}" for s, i in splits.items()})
    # Model stages: the MLflow run and registered version; evaluation: headline numbers.
    for key, value in summary.items():
        if key == "mlflow_run_url":
            meta[key] = dg.MetadataValue.url(value)
        elif key == "report_path":
            meta[key] = dg.MetadataValue.path(value)
        elif key in ("model_uri", "model_version", "run_id", "reason", "candidate"):
            meta[key] = str(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            meta[key] = float(value)
        elif isinstance(value, bool):
            meta[key] = value
    return meta
