"""Sweep TimerPO settings from one SFT checkpoint and score each result on the eval split.

RL on a small model is fragile: a learning rate that is fine for SFT wrecks the policy in a few
GRPO steps (measured: README, "TimerPO sweep"). This module is how the tiny profile's TimerPO
values were chosen, kept so the choice can be re-checked or redone for another profile::

    anomseer sweep-timerpo --grid '[{"learning_rate": 5e-6, "max_steps": 40, "temperature": 0.7},
                                    {"learning_rate": 1e-5, "max_steps": 30, "temperature": 0.7}]'

Each setting overrides fields of ``params.yaml``'s ``timerpo`` section, trains from
``data/models/sft_checkpoint`` into ``<out>/<name>`` and is scored greedily with the
``evaluation`` section's generation settings: accuracy, mean affiliation F1 and the well-formed
rate, exactly as the evaluation report computes them (an unparseable answer scores 0). The SFT
checkpoint itself is scored first as the reference row. Finished settings are kept in
``<out>/results.json`` and skipped on a rerun (resumable); a setting's name is derived from its
overrides, so a changed setting is a new row.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from anomseer import datasets
from anomseer.config import Params

RESULTS = "results.json"
SFT_ROW = "sft_checkpoint"


def setting_name(overrides: dict) -> str:
    """A stable folder-safe name for a setting, e.g. ``learning_rate=5e-06,max_steps=40``."""
    if not overrides:
        return "defaults"
    return ",".join(f"{k}={overrides[k]}" for k in sorted(overrides)).replace("/", "_")


def check_grid(grid, timerpo) -> list[dict]:
    """The grid as a list of override dicts; ValueError naming an unknown field or a bad value."""
    if not isinstance(grid, list) or not all(isinstance(g, dict) for g in grid) or not grid:
        raise ValueError("the grid must be a non-empty JSON list of objects, e.g. '[{\"learning_rate\": 5e-6}]'")
    known = {f.name for f in dataclasses.fields(timerpo)}
    for overrides in grid:
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown timerpo field(s) {unknown} in the grid; use fields of params.yaml's timerpo section")
        dataclasses.replace(timerpo, **overrides).validate()
    return grid


def score_model(model_dir: Path, root: Path, params: Params) -> dict:
    """Greedy eval-split scores of one model folder (fractions).

    ``accuracy``, ``aff_f1`` (mean over series, the report's "affiliation F1"), ``aff_f1_groups``
    (mean of the four paper groups' means, the paper's "avg F1") and ``well_formed``.
    """
    from anomseer.evaluation.run import _record
    from anomseer.evaluation.scoring import METRICS, group_indices, paper_average, per_record_metrics
    from anomseer.modeling.generation import generate_completions
    from anomseer.modeling.loading import load_model_and_processor
    from anomseer.render import load_image
    from anomseer.task import build_prompt, parse_completion

    samples = datasets.load_split(root, "eval")
    model, processor = load_model_and_processor(model_dir)
    ev = params.evaluation
    texts = generate_completions(
        model, processor, [load_image(datasets.image_path(root, "eval", s.uid)) for s in samples],
        [build_prompt(s.length) for s in samples],
        max_new_tokens=ev.max_new_tokens, temperature=ev.temperature, batch_size=ev.batch_size, seed=ev.seed,
    )
    records = []
    for s, text in zip(samples, texts):
        parsed = parse_completion(text, s.length)  # the report's record: unparseable -> None -> 0
        records.append(_record(s, "eval", parsed.intervals, parsed.label, parsed.well_formed))
    values = per_record_metrics(records)
    means = values.mean(axis=0)
    col = {m: i for i, m in enumerate(METRICS)}
    out = {k: float(means[col[m]]) for k, m in (("accuracy", "accuracy"), ("aff_f1", "AffF1"), ("well_formed", "well_formed"))}
    by_group = {name.removeprefix("paper:"): float(values[idx, col["AffF1"]].mean())
                for name, idx in group_indices(records).items() if name.startswith("paper:")}
    out["aff_f1_groups"] = paper_average(by_group) or 0.0
    return out


def run_sweep(root: Path, params: Params, grid: list[dict], out: Path, say=print) -> list[dict]:
    """Train and score every setting of ``grid`` (skipping finished ones); return all result rows."""
    from anomseer.stages import model_dir
    from anomseer.training.timerpo import run_timerpo

    root, out = Path(root), Path(out)
    grid = check_grid(grid, params.timerpo)
    sft = model_dir(root, "sft_checkpoint")
    if not (sft / "config.json").is_file():
        raise FileNotFoundError(f"no SFT checkpoint at {sft}; run `dvc repro sft_checkpoint` first")
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS
    done = {r["name"]: r for r in json.loads(results_path.read_text())} if results_path.is_file() else {}

    def record(row: dict) -> None:
        done[row["name"]] = row
        results_path.write_text(json.dumps(list(done.values()), indent=2) + "\n")

    if SFT_ROW not in done:
        say("scoring the SFT checkpoint (reference row)")
        record({"name": SFT_ROW, "overrides": None, **score_model(sft, root, params)})
    rows = datasets.training_rows(root, "train")
    for i, overrides in enumerate(grid, 1):
        name = setting_name(overrides)
        if name in done:
            say(f"[{i}/{len(grid)}] {name}: done earlier, kept")
            continue
        say(f"[{i}/{len(grid)}] {name}: training")
        tp = dataclasses.replace(params.timerpo, **overrides)
        result = run_timerpo(sft, rows, out / name, tp, resume=True, reward_params=params.reward)
        record({
            "name": name, "overrides": overrides, "steps": result.get("global_step"),
            "reward_start": result.get("reward_start"), "reward_end": result.get("reward_end"),
            **score_model(out / name, root, params),
        })
    return [done[SFT_ROW], *(done[setting_name(o)] for o in grid)]


def format_table(rows: list[dict]) -> str:
    """A Markdown table of sweep rows (percentages)."""
    lines = ["| setting | acc | AffF1 (series mean) | AffF1 (paper groups' avg) | well-formed |", "|---|---|---|---|---|"]
    for r in rows:
        groups = f"{100 * r['aff_f1_groups']:.1f}" if "aff_f1_groups" in r else "–"
        lines.append(
            f"| {r['name']} | {100 * r['accuracy']:.1f} | {100 * r['aff_f1']:.1f} | {groups} | {100 * r['well_formed']:.1f}% |"
        )
    return "\n".join(lines)
