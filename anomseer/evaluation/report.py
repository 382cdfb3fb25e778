"""The evaluation report: ``report.md`` with figures, plus CSV plot data for ``dvc plots``.

Written from the results of :func:`anomseer.evaluation.run.evaluate`:

- ``report.md``: every entry's scores with 95 % bootstrap CIs; accuracy and affiliation F1 by the
  paper's groups next to the published table (method.md section 7, reference values, not ours);
  the baselines, including always-empty and why its lenient score is what it is; the class-prior
  diagnostic; how many of each model's numeric claims hold; the words training changed;
- ``figures/``: per-family bars with CI error bars, the best model's confusion matrix, example
  series (truth shaded green, prediction red, the reasoning beneath), learning curves;
- ``plots/per_family.csv`` (model, family, aff_f1, accuracy) and ``plots/learning_curves.csv``
  (model, step, metric, value).

Figures use matplotlib's object API (``Figure`` + Agg canvas), never pyplot's global state.
"""

from __future__ import annotations

import csv
import json
import math
import textwrap
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from anomseer.evaluation.scoring import PAPER_GROUPS, paper_average

#: Published results on the AnomLLM test split (accuracy %, affiliation F1 % per paper group).
#: Reference data, not ours: copied from method.md section 7.
PUBLISHED_RESULTS: tuple[tuple[str, float, float, float, float, float, float], ...] = (
    # model, accuracy, freq F1, trend F1, range F1, point F1, avg F1
    ("GPT-4o (prompting)", 17.2, 10.9, 43.5, 57.0, 53.4, 41.2),
    ("Gemini-2.5-Pro (prompting)", 12.6, 19.1, 59.0, 81.3, 74.5, 58.5),
    ("Qwen2.5-VL-72B (prompting)", 14.6, 31.4, 32.1, 74.6, 62.7, 50.2),
    ("TimeMaster-3B (SFT + GRPO)", 57.9, 51.4, 76.6, 80.1, 79.6, 71.9),
    ("AnomSeer-3B (TimerPO)", 62.8, 58.9, 84.9, 85.6, 87.8, 79.3),
    ("AnomSeer-7B (TimerPO)", 65.0, 60.8, 87.7, 94.3, 94.9, 84.4),
)
PUBLISHED_SOURCE = (
    "AnomSeer (arXiv 2602.08868, ICML 2026), main results table, as transcribed in method.md §7 from "
    "secondary copies of the paper (approximate). Their test split is AnomLLM's, generated and rendered by the "
    "reference code (with its label-leaking shaded images and the misspelled noisy-* labels); ours is "
    "regenerated with the fixes of method.md §2, so the rows are a reference point, not a like-for-like comparison."
)
#: At most this many entries share one per-family bar chart (models first, then baselines).
MAX_BAR_ENTRIES = 8
#: Reasoning text under an example plot is cut to this many characters.
EXAMPLE_TEXT_CHARS = 400

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def write_report(
    results: Mapping,
    out_dir,
    samples: Mapping | None = None,
    records: Mapping | None = None,
    model_dirs: Mapping | None = None,
    n_examples: int = 6,
) -> Path:
    """Write ``report.md``, ``figures/*.png`` and ``plots/*.csv`` under ``out_dir``; return the report path.

    Args:
        results: what :func:`anomseer.evaluation.run.evaluate` writes to ``results.json``
            (``scores``, ``entries``, ``splits``, ``skipped``, ``reasoning``, ``word_shift``...).
        out_dir: output folder (created).
        samples: split -> list of :class:`~anomseer.series.sample.Sample`, for the example plots.
        records: entry -> split -> records (with ``reasoning`` for models), for the examples.
        model_dirs: model name -> folder; each folder's ``history.json`` gives a learning curve.
        n_examples: eval series drawn with the best model's answers (0 draws none).
    """
    out_dir = Path(out_dir)
    fig_dir, plot_dir = out_dir / "figures", out_dir / "plots"
    fig_dir.mkdir(parents=True, exist_ok=True)
    plot_dir.mkdir(parents=True, exist_ok=True)
    scores, entries = results["scores"], results["entries"]
    models = [n for n, k in entries.items() if k == "model"]
    baselines = [n for n, k in entries.items() if k == "baseline"]
    shown = (models + baselines)[:MAX_BAR_ENTRIES]
    highlight = results.get("best_model") or results.get("best_baseline")

    lines = ["# AnomSeer evaluation report", ""]
    lines += _overview(results)
    lines += _skipped(results)
    for split in results["splits"]:
        lines += _main_table(results, split)
    lines += _paper_table(results)
    lines += _baseline_section(results)
    lines += _class_prior_section(results)
    lines += _reasoning_section(results)

    figures = []
    _write_per_family_csv(scores, plot_dir / "per_family.csv")
    for split in results["splits"]:
        path = fig_dir / f"per_family_{split}.png"
        if _per_family_figure(scores, shown, split, path):
            figures.append((f"Per-family affiliation F1 and accuracy, {split} split (95 % bootstrap CIs)", path))
    if highlight and any(split in scores.get(highlight, {}) for split in results["splits"]):
        split = "eval" if "eval" in scores[highlight] else next(iter(scores[highlight]))
        path = fig_dir / "confusion.png"
        _confusion_figure(scores[highlight][split]["confusion"], f"{highlight} on {split}", path)
        figures.append((f"Confusion matrix of {highlight} ({split} split)", path))
    if highlight and samples and records and n_examples > 0 and "eval" in samples and "eval" in records.get(highlight, {}):
        path = fig_dir / "examples.png"
        _examples_figure(samples["eval"], records[highlight]["eval"], highlight, n_examples, path)
        figures.append((f"Example eval series: truth green, {highlight}'s answer red, its reasoning beneath", path))
    curves = _learning_curves(model_dirs or {})
    _write_curves_csv(curves, plot_dir / "learning_curves.csv")
    if curves:
        path = fig_dir / "learning_curves.png"
        _curves_figure(curves, path)
        figures.append(("Learning curves (loss for SFT, reward for TimerPO runs)", path))
    lines += ["## Figures", ""]
    for caption, path in figures:
        lines += [f"**{caption}**", "", f"![{caption}]({path.relative_to(out_dir).as_posix()})", ""]
    if not curves:
        lines += ["No learning curves: no evaluated model folder holds a `history.json`.", ""]

    report = out_dir / "report.md"
    report.write_text("\n".join(lines).rstrip() + "\n")
    return report


# --------------------------------------------------------------------------------------------
# Markdown sections


def _overview(results) -> list[str]:
    p = results.get("params", {})
    lines = [
        "Metrics are means over series; brackets are 95 % percentile-bootstrap intervals "
        f"({p.get('n_boot', '?')} resamples). `score` = 0.5 x accuracy + 0.5 x affiliation F1 (the promotion "
        "metric). Unparseable answers score 0, never skipped. Localization conventions follow the outcome reward: "
        "an empty answer on a normal series scores 1, on an anomalous one 0.",
        "",
        "| split | series | normal share |",
        "|---|---|---|",
    ]
    for split, info in results["splits"].items():
        lines.append(f"| {split} | {info['n']} | {_pct(info['normal_share'])} |")
    return lines + [""]


def _skipped(results) -> list[str]:
    skipped = results.get("skipped") or {}
    if not skipped:
        return []
    lines = ["## Models not evaluated", ""]
    lines += [f"- **{name}**: {reason}" for name, reason in skipped.items()]
    return lines + [""]


def _main_table(results, split: str) -> list[str]:
    scores = results["scores"]
    names = [n for n in results["entries"] if split in scores.get(n, {})]
    if not names:
        return []
    lines = [
        f"## Results on the {split} split",
        "",
        "| entry | kind | accuracy | affiliation F1 | point F1 | score | well-formed | AffF1 on anomalous |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in sorted(names, key=lambda n: -scores[n][split]["score"]):
        g = scores[name][split]["groups"]
        anom = _ci(g["anomalous"]["AffF1"]) if "anomalous" in g else "n/a"
        o = g["overall"]
        lines.append(
            f"| {name} | {results['entries'][name]} | {_ci(o['accuracy'])} | {_ci(o['AffF1'])} | {_ci(o['F1'])} | "
            f"{_ci(o['score'])} | {_pct(o['well_formed']['mean'])} | {anom} |"
        )
    return lines + [""]


def _paper_table(results) -> list[str]:
    scores = results["scores"]
    names = [n for n in results["entries"] if "eval" in scores.get(n, {})]
    if not names:
        return []
    lines = [
        "## By the paper's groups (eval split, %) next to the published table",
        "",
        "| model | acc | freq F1 | trend F1 | range F1 | point F1 | avg F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        groups = scores[name]["eval"]["groups"]
        by_group = {g: groups.get(f"paper:{g}", {}).get("AffF1", {}).get("mean") for g in PAPER_GROUPS}
        f1s, avg = list(by_group.values()), paper_average(by_group)
        acc = groups["overall"]["accuracy"]["mean"]
        cells = [_num100(acc)] + [_num100(v) for v in f1s] + [_num100(avg)]
        lines.append(f"| {name} (ours) | " + " | ".join(cells) + " |")
    for row in PUBLISHED_RESULTS:
        lines.append(f"| *{row[0]}, published* | " + " | ".join(f"*{v:.1f}*" for v in row[1:]) + " |")
    lines += [
        "",
        "Our rows: accuracy over all eval series; F1 = mean affiliation F1 of each group's series; avg F1 = mean "
        f"of the group values. Italic rows are published reference values, not our results. Source: {PUBLISHED_SOURCE}",
        "",
    ]
    return lines


def _baseline_section(results) -> list[str]:
    scores, entries = results["scores"], results["entries"]
    baselines = [n for n, k in entries.items() if k == "baseline"]
    if not baselines:
        return []
    lines = ["## Baselines", ""]
    lines += [
        "- `always_empty` answers `[]` / `normal` for every series; `blind_expert` is the expert cascade run "
        "without the truth; `random_intervals` draws 0-3 random intervals and a random anomaly label per series; "
        "`percentile_threshold` flags values outside the series' own percentiles as `global point`.",
    ]
    for split, info in results["splits"].items():
        if "always_empty" in scores and split in scores["always_empty"]:
            o = scores["always_empty"][split]["groups"]["overall"]
            lines.append(
                f"- Why always-empty scores what it does on {split}: {_pct(info['normal_share'])} of the series are "
                f"normal, and an empty answer on a normal series is a perfect answer (all six localization scores "
                f"and the class are 1) while on an anomalous one everything is 0. So its accuracy and affiliation F1 "
                f"both equal the normal share ({_pct(o['accuracy']['mean'])}, {_pct(o['AffF1']['mean'])}). The "
                "lenient metrics reward saying nothing; a model must clear this floor, and the 'AffF1 on anomalous' "
                "column shows what is left once the free points are gone."
            )
    lines.append("")
    lines += ["| baseline | split | accuracy | affiliation F1 | AffF1 on anomalous | score |", "|---|---|---|---|---|---|"]
    for name in baselines:
        for split, sc in scores.get(name, {}).items():
            g = sc["groups"]
            anom = _ci(g["anomalous"]["AffF1"]) if "anomalous" in g else "n/a"
            lines.append(f"| {name} | {split} | {_ci(g['overall']['accuracy'])} | {_ci(g['overall']['AffF1'])} | {anom} | {_ci(g['overall']['score'])} |")
    return lines + [""]


def _class_prior_section(results) -> list[str]:
    scores, entries = results["scores"], results["entries"]
    priors = [n for n, k in entries.items() if k in ("class_prior", "oracle")]
    if not priors:
        return []
    lines = [
        "## Class-prior diagnostic",
        "",
        "Each `+class_prior` entry keeps a label and answers that class's typical interval from the training split "
        "(median start and median length of each class's first interval, as fractions of the length). "
        "`<model>+class_prior` uses the model's own label: if it scores close to the model, the model's intervals "
        "add little beyond its class. `oracle_class+class_prior` uses the true label: a perfect classifier that "
        "cannot read positions.",
        "",
        "| entry | split | accuracy | affiliation F1 | AffF1 on anomalous |",
        "|---|---|---|---|---|",
    ]
    for name in [n for n in entries if entries[n] == "model"] + priors:
        for split, sc in scores.get(name, {}).items():
            g = sc["groups"]
            anom = _ci(g["anomalous"]["AffF1"]) if "anomalous" in g else "n/a"
            lines.append(f"| {name} | {split} | {_ci(g['overall']['accuracy'])} | {_ci(g['overall']['AffF1'])} | {anom} |")
    return lines + [""]


def _reasoning_section(results) -> list[str]:
    reasoning = results.get("reasoning") or {}
    lines = []
    if reasoning:
        lines += [
            "## Grounding of the reasoning",
            "",
            "Numeric claims the trace verifier can parse in each model's `<think>` text, recomputed from the series.",
            "",
            "| model | split | completions with a claim | claims | verified |",
            "|---|---|---|---|---|",
        ]
        for name, by_split in reasoning.items():
            for split, r in by_split.items():
                share = r["share_with_claims"]
                verified = "n/a (no claim)" if r["verified_share"] is None else f"{_pct(r['verified_share'])} ({r['n_verified']})"
                lines.append(f"| {name} | {split} | {_pct(share) if share is not None else 'n/a'} | {r['n_claims']} | {verified} |")
        lines.append("")
    for pair, rows in (results.get("word_shift") or {}).items():
        a, b = pair.split(" -> ", 1)
        lines += [
            f"### Words that moved most, {a} -> {b} (eval reasoning, per 1,000 tokens)",
            "",
            f"| word | {a} | {b} | shift |",
            "|---|---|---|---|",
        ]
        for r in rows:
            lines.append(f"| `{r['word']}` | {1000 * r['freq_a']:.1f} | {1000 * r['freq_b']:.1f} | {1000 * r['shift']:+.1f} |")
        lines.append("")
    return lines


# --------------------------------------------------------------------------------------------
# CSV plot data


def _write_per_family_csv(scores, path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["model", "family", "aff_f1", "accuracy"])
        for name, by_split in scores.items():
            for sc in by_split.values():
                for group, summary in sc["groups"].items():
                    if group.startswith("family:"):
                        writer.writerow([name, group.split(":", 1)[1], _r(summary["AffF1"]["mean"]), _r(summary["accuracy"]["mean"])])


def _write_curves_csv(curves: dict, path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["model", "step", "metric", "value"])
        for name, (_, rows) in curves.items():
            for step, metric, value in rows:
                writer.writerow([name, step, metric, _r(value)])


def _learning_curves(model_dirs: Mapping) -> dict[str, tuple[str, list[tuple[float, str, float]]]]:
    """model -> (metric to plot, [(step, metric, value), ...] for every numeric logged value).

    ``history.json`` is a list of ``{"step": ..., key: value, ...}``. The plotted metric is the
    reward for TimerPO runs (TRL logs ``reward``; else any key containing "reward") and the loss
    otherwise (SFT). Unreadable histories are skipped: a report must not fail on a log file.
    """
    curves = {}
    for name, folder in model_dirs.items():
        path = Path(folder) / "history.json"
        try:
            history = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        rows = []
        for entry in history if isinstance(history, list) else []:
            if not isinstance(entry, dict) or not _is_number(entry.get("step")):
                continue
            for key, value in entry.items():
                if key not in ("step", "epoch") and _is_number(value):
                    rows.append((float(entry["step"]), key, float(value)))
        keys = {k for _, k, _ in rows}
        reward_keys = sorted(k for k in keys if "reward" in k.lower())
        metric = "reward" if "reward" in keys else (reward_keys[0] if reward_keys else ("loss" if "loss" in keys else None))
        if metric is not None:
            curves[name] = (metric, rows)
    return curves


# --------------------------------------------------------------------------------------------
# figures


def _per_family_figure(scores, names, split: str, path: Path) -> bool:
    names = [n for n in names if split in scores.get(n, {})]
    if not names:
        return False
    families = sorted({g.split(":", 1)[1] for n in names for g in scores[n][split]["groups"] if g.startswith("family:")})
    fig = Figure(figsize=(max(7.0, 1.1 * len(families) + 2), 6.4), dpi=100)
    FigureCanvasAgg(fig)
    x = np.arange(len(families))
    width = 0.8 / len(names)
    for row, (metric, title) in enumerate((("AffF1", "affiliation F1"), ("accuracy", "accuracy"))):
        ax = fig.add_subplot(2, 1, row + 1)
        for k, name in enumerate(names):
            groups = scores[name][split]["groups"]
            means, lows, highs = [], [], []
            for fam in families:
                s = groups.get(f"family:{fam}", {}).get(metric)
                means.append(s["mean"] if s else np.nan)
                lows.append(s["mean"] - s["low"] if s else 0.0)
                highs.append(s["high"] - s["mean"] if s else 0.0)
            ax.bar(x + (k - (len(names) - 1) / 2) * width, means, width, yerr=[lows, highs], capsize=2,
                   label=name, color=_COLORS[k % len(_COLORS)], error_kw={"linewidth": 0.8})
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(title)
        ax.set_xticks(x, families, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        if row == 0:
            ax.set_title(f"{split} split (error bars: 95 % bootstrap CI)", fontsize=9)
            handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, ncol=min(4, len(names)), loc="upper center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.035 * math.ceil(len(names) / 4) - 0.01))
    fig.savefig(path)
    return True


def _confusion_figure(confusion, title: str, path: Path) -> None:
    counts = np.asarray(confusion["counts"], dtype=float)
    fig = Figure(figsize=(7.5, 5.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            if counts[i, j]:
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(confusion["pred"])), confusion["pred"], rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(confusion["true"])), confusion["true"], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} (counts; colour = share of the true class)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path)


def _examples_figure(samples, records, name: str, n_examples: int, path: Path) -> None:
    """``n_examples`` series: one normal series and the rest anomalous ones, evenly spaced over the
    split (which is ordered by family, so the picks cover the families). Anomalous series show
    most; one normal series shows whether the model stays quiet."""
    by_uid = {r["uid"]: r for r in records}
    normal = [s for s in samples if not s.intervals]
    anomalous = [s for s in samples if s.intervals]
    n_normal = min(len(normal), 1 if n_examples > 1 and anomalous else n_examples)
    chosen = _spread(anomalous, n_examples - n_normal) + _spread(normal, n_normal)
    if len(chosen) < min(n_examples, len(samples)):  # too few anomalous series: fill with normal ones
        taken = {s.uid for s in chosen}
        chosen += [s for s in _spread(normal, n_examples) if s.uid not in taken][: n_examples - len(chosen)]
    fig = Figure(figsize=(11, 2.6 * len(chosen)), dpi=80)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2 * len(chosen), 1, height_ratios=[3, 1.6] * len(chosen), hspace=0.45,
                            left=0.05, right=0.98, top=1 - 0.35 / len(chosen), bottom=0.02)
    for k, sample in enumerate(chosen):
        rec = by_uid.get(sample.uid, {})
        ax = fig.add_subplot(grid[2 * k])
        ax.plot(np.arange(sample.length), sample.values, color="steelblue", linewidth=0.8)
        for s, e in sample.intervals:
            ax.axvspan(s, e, color="green", alpha=0.25, linewidth=0)
        for s, e in rec.get("pred_intervals") or []:
            ax.axvspan(s, e, color="red", alpha=0.25, linewidth=0)
        pred_label = rec.get("pred_label") or "unparseable"
        answer = "unparseable answer" if rec.get("pred_intervals") is None else f"{len(rec['pred_intervals'])} interval(s)"
        ax.set_title(f"{sample.uid}  true: {sample.label} {list(sample.intervals)[:4]}  |  predicted: {pred_label}, {answer}",
                     fontsize=8, loc="left")
        ax.set_xlim(0, sample.length - 1)
        ax.tick_params(labelsize=7)
        text_ax = fig.add_subplot(grid[2 * k + 1])
        text_ax.axis("off")
        text = rec.get("reasoning") or ("(baseline: no reasoning)" if "completion" not in rec else "(no <think> block)")
        if len(text) > EXAMPLE_TEXT_CHARS:
            text = text[: EXAMPLE_TEXT_CHARS - 3] + "..."
        text_ax.text(0, 1, "\n".join(textwrap.wrap(text, 150)[:4]), va="top", ha="left", fontsize=7, family="monospace",
                     transform=text_ax.transAxes)
    fig.suptitle(f"{name}: truth green, prediction red", fontsize=10)
    fig.savefig(path)


def _spread(items: list, n: int) -> list:
    """``n`` items evenly spaced over ``items`` (all of them when there are fewer)."""
    if n <= 0 or not items:
        return []
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, min(n, len(items))).round().astype(int))]


def _curves_figure(curves: dict, path: Path) -> None:
    fig = Figure(figsize=(5.0 * min(3, len(curves)), 3.4 * math.ceil(len(curves) / 3)), dpi=90)
    FigureCanvasAgg(fig)
    cols = min(3, len(curves))
    for k, (name, (metric, rows)) in enumerate(curves.items()):
        ax = fig.add_subplot(math.ceil(len(curves) / cols), cols, k + 1)
        pts = sorted((step, value) for step, key, value in rows if key == metric)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=_COLORS[k % len(_COLORS)], linewidth=1.2)
        ax.set_title(f"{name}: {metric}", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


# --------------------------------------------------------------------------------------------
# formatting


def _ci(s: Mapping) -> str:
    return f"{s['mean']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _num100(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _r(x: float) -> float:
    return round(float(x), 6)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


__all__ = ["PUBLISHED_RESULTS", "PUBLISHED_SOURCE", "write_report"]
