"""One plain function per lineage stage: read inputs from paths, write outputs to paths, return a
small JSON-able summary.

Dagster assets (``orchestration/defs``) and the ``anomseer <stage>`` CLI that ``dvc.yaml`` calls are
thin shells over these functions, so both paths run the same code. ``STAGES`` is the lineage
itself (names, upstreams, params sections, outputs); a test keeps ``dvc.yaml`` and the Dagster
asset graph identical to it.
"""

from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from anomseer import datasets
from anomseer.config import Params


@dataclass(frozen=True)
class Stage:
    """A lineage node. ``outs`` are paths relative to the project root."""

    name: str
    upstream: tuple[str, ...]
    params: tuple[str, ...]  # params.yaml sections it reads
    outs: tuple[str, ...]
    deps: tuple[str, ...] = ()  # code paths (relative) besides upstream outputs
    metrics: tuple[str, ...] = field(default=())  # small JSON files, not cached by DVC
    plots: tuple[str, ...] = field(default=())
    persist: tuple[str, ...] = field(default=())  # outs DVC keeps across reruns (resumable caches)
    description: str = ""


def _progress(label: str):
    """A tiny progress printer for long loops (stderr, every ~10%)."""
    import sys

    state = {"last": -1}

    def report(done: int, total: int) -> None:
        pct = int(100 * done / max(total, 1))
        if pct // 10 != state["last"] // 10 or done == total:
            state["last"] = pct
            print(f"[{label}] {done}/{total} ({pct}%)", file=sys.stderr, flush=True)

    return report


#: Summary keys that differ between two runs of the same stage on the same inputs (wall times,
#: throughputs, MLflow ids). They go to ``run_info.json``, which ``.dvcignore`` keeps out of DVC's
#: hashes, so a rerun that writes the same data leaves the output's hash, and everything
#: downstream, untouched.
VOLATILE_KEYS = frozenset({"run_id", "mlflow_run_url", "model_uri", "model_version", "wall_seconds", "seconds", "step_time", "train_runtime"})
VOLATILE_SUFFIXES = ("_per_s", "_per_second", "per_second", "_time_s")
RUN_INFO = "run_info.json"


def is_volatile_key(key: str) -> bool:
    """True for a summary key whose value changes from run to run of identical work."""
    key = str(key)
    return key in VOLATILE_KEYS or key.endswith(VOLATILE_SUFFIXES) or key.startswith("timerpo/time_")


def split_volatile(obj, where: str = ""):
    """``(stable, volatile)``: ``obj`` without volatile keys (at any depth), and those keys as a flat
    dict keyed by their path (``vision_history[0].seconds``)."""
    volatile: dict = {}
    if isinstance(obj, dict):
        stable = {}
        for key, value in obj.items():
            path = f"{where}.{key}" if where else str(key)
            if is_volatile_key(key):
                volatile[path] = value
            else:
                stable[key], inner = split_volatile(value, path)
                volatile.update(inner)
        return stable, volatile
    if isinstance(obj, list):
        stable_list = []
        for i, value in enumerate(obj):
            item, inner = split_volatile(value, f"{where}[{i}]")
            stable_list.append(item)
            volatile.update(inner)
        return stable_list, volatile
    return obj, volatile


def _write_summary(path: Path, summary: dict) -> dict:
    """Write ``summary.json`` (deterministic part) and ``run_info.json`` (volatile part) beside it;
    return the whole summary (Dagster metadata shows both)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stable, volatile = split_volatile(summary)
    path.write_text(json.dumps(stable, indent=2, sort_keys=True) + "\n")
    (path.parent / RUN_INFO).write_text(json.dumps(volatile, indent=2, sort_keys=True, default=float) + "\n")
    return summary


# --------------------------------------------------------------------------- data stages


def run_synthetic_series(params: Params, root: Path) -> dict:
    """Generate train / eval / heldout series (bit-reproducible from the seeds in params)."""
    from anomseer.series.io import save_samples

    root = Path(root)
    summary: dict = {"splits": {}}
    for split in datasets.SPLITS:
        t0 = time.perf_counter()
        samples = datasets.build_split(split, params.data)
        seconds = time.perf_counter() - t0
        save_samples(samples, datasets.series_path(root, split))
        by_family = collections.Counter(s.family for s in samples)
        by_label = collections.Counter(s.label for s in samples)
        summary["splits"][split] = {
            "n": len(samples),
            "per_family": dict(sorted(by_family.items())),
            "per_label": dict(sorted(by_label.items())),
            "series_per_s": round(len(samples) / max(seconds, 1e-9), 1),
        }
    return _write_summary(root / "data" / "series" / "summary.json", summary)


def run_rendered_images(params: Params, root: Path) -> dict:
    """Render one clean PNG per series (never the ground truth), using all cores."""
    import shutil

    from anomseer.render import render_many

    root = Path(root)
    summary: dict = {"splits": {}, "width_px": params.render.width_px, "height_px": params.render.height_px}
    for split in datasets.SPLITS:
        samples = datasets.load_split(root, split)
        out_dir = datasets.image_dir(root, split)
        if out_dir.exists():  # stale images of series that no longer exist must not survive
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        paths = [datasets.image_path(root, split, s.uid) for s in samples]
        t0 = time.perf_counter()
        render_many([s.values for s in samples], paths, params.render, progress=_progress(f"render {split}"))
        seconds = time.perf_counter() - t0
        summary["splits"][split] = {"n": len(paths), "images_per_s": round(len(paths) / max(seconds, 1e-9), 1)}
    return _write_summary(root / "data" / "images" / "summary.json", summary)


def run_expert_traces(params: Params, root: Path) -> dict:
    """Write the expert trace and the full SFT target for every series, verified."""
    from anomseer.expert import verify_trace, write_trace
    from anomseer.task import format_completion

    root = Path(root)
    summary: dict = {"splits": {}}
    for split in datasets.SPLITS:
        samples = datasets.load_split(root, split)
        report = _progress(f"traces {split}")
        rows, failures, words = [], [], []
        t0 = time.perf_counter()
        for i, s in enumerate(samples):
            trace = write_trace(s, params.expert)
            problems = verify_trace(trace, s.values, params.expert)
            if problems:
                failures.append({"uid": s.uid, "problems": problems})
            words.append(len(trace.split()))
            rows.append(
                {
                    "uid": s.uid,
                    "family": s.family,
                    "label": s.label,
                    "length": s.length,
                    "intervals": [list(iv) for iv in s.intervals],
                    "trace": trace,
                    "completion": format_completion(trace, s.intervals, s.label),
                    "verified": not problems,
                }
            )
            report(i + 1, len(samples))
        seconds = time.perf_counter() - t0
        datasets.write_jsonl(datasets.traces_path(root, split), rows)
        summary["splits"][split] = {
            "n": len(rows),
            "verified": len(rows) - len(failures),
            "failures": failures[:20],
            "traces_per_s": round(len(rows) / max(seconds, 1e-9), 1),
            "mean_words": round(sum(words) / max(len(words), 1), 1),
            "max_words": max(words, default=0),
        }
    return _write_summary(root / "data" / "traces" / "summary.json", summary)


# --------------------------------------------------------------------------- model stages

ABLATIONS: dict[str, dict] = {
    # stage name -> overrides of the `timerpo` section that define the ablation (method.md §5)
    "timerpo_checkpoint": {},
    "ablation_vanilla_grpo": {"alpha": 0.0},
    "ablation_no_projection": {"project": False},
    "ablation_generic_cot": {"reference": "generic"},
}


def model_dir(root: Path, stage: str) -> Path:
    """Where a model stage saves its Hugging Face folder (``data/models/<stage>``)."""
    return Path(root) / "data" / "models" / stage


def _params_fingerprint(*sections) -> str:
    import dataclasses
    import hashlib

    blob = json.dumps([dataclasses.asdict(s) for s in sections], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _guard_resume(out: Path, fingerprint: str) -> bool:
    """Resume only checkpoints made with the same params; stale ones are wiped. Returns resume."""
    import shutil

    stamp = out / "checkpoints" / "params_fingerprint.txt"
    if stamp.exists() and stamp.read_text().strip() != fingerprint:
        shutil.rmtree(out / "checkpoints")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    return True


def _finish_model(out: Path) -> None:
    """Drop intermediate checkpoints once the final model is saved (DVC caches only the result)."""
    import shutil

    if (out / "checkpoints").exists():
        shutil.rmtree(out / "checkpoints")
    # Trainer pickles its arguments next to the weights; nothing reads it and a served model
    # should carry no pickle.
    (out / "training_args.bin").unlink(missing_ok=True)


def run_base_model(params: Params, root: Path) -> dict:
    """The starting model: a from-scratch tiny Qwen2.5-VL with a tokenizer trained on this
    project's prompts and traces, its ViT pre-trained densely and its decoder warmed up on short
    answers (both optional, ``base`` section), or a pretrained Qwen2.5-VL checkpoint copied with
    the image-only processor.

    Resumable: the from-scratch and vision-pre-trained folders and the warm-up's checkpoints are
    kept under ``<out>/work`` (stamped with the params they were made with) until the stage ends.
    """
    import shutil

    from anomseer.inference import write_model_meta
    from anomseer.modeling.loading import count_parameters, load_model_and_processor
    from anomseer.modeling.processor import image_token_count

    root = Path(root)
    out = model_dir(root, "base_model")
    work = out / "work"
    fingerprint = _params_fingerprint(params.base, params.model, params.data, params.render)
    stamp = work / "params_fingerprint.txt"
    if out.exists() and not (stamp.exists() and stamp.read_text().strip() == fingerprint):
        shutil.rmtree(out)
    work.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    summary: dict = {"source": params.base.source}
    if params.base.source == "tiny":
        summary.update(_build_tiny_base(params, root, out, work))
    else:
        model, processor = load_model_and_processor(params.base.path)
        model.save_pretrained(out)
        processor.save_pretrained(out)
    shutil.rmtree(work)
    write_model_meta(out, params.data.length, params.render)
    model, processor = load_model_and_processor(out)
    summary.update(parameters=count_parameters(model), image_tokens=image_token_count(processor))
    return _write_summary(out / "summary.json", summary)


def _build_tiny_base(params: Params, root: Path, out: Path, work: Path) -> dict:
    """scratch -> (vision pre-training) -> (answer-only warm-up) -> ``out``; returns summary fields."""
    import shutil

    from anomseer.modeling.tiny import TINY_PARAMS_FILE, build_tiny_model
    from anomseer.task import build_prompt

    base = params.base
    scratch, seeing = work / "scratch", work / "vision_pretrained"
    info: dict = {}
    if not (scratch / "model.safetensors").exists():
        corpus = [build_prompt(params.data.length), build_prompt(params.data.heldout_length)]
        corpus += [r["completion"] for r in datasets.read_jsonl(datasets.traces_path(root, "train"))]
        build_tiny_model(scratch, corpus, params.model)
    current = scratch
    if base.vision_epochs:
        history_file = seeing / "vision_history.json"
        if not history_file.exists():
            history = _pretrain_vision(params, root, scratch, seeing)
            history_file.write_text(json.dumps(history) + "\n")
        history = json.loads(history_file.read_text())
        info["vision_pretraining"] = history[-1] if history else {}
        info["vision_history"] = history
        current = seeing
    if base.align_steps:
        from anomseer.training.align import run_alignment

        rows = datasets.training_rows(root, "train")
        result = run_alignment(current, rows, work / "aligned", base)
        info["alignment"] = {k: result[k] for k in ("steps", "final_loss", "wall_seconds", "samples_per_second") if k in result}
        info["alignment_loss_curve"] = result["loss_curve"]
        current = work / "aligned"
    # The finished folder already holds weights + processor files: copy them, no reload.
    for item in current.iterdir():
        if item.is_file() and item.name not in ("training_args.bin", "vision_history.json"):
            shutil.copy2(item, out / item.name)
    if (scratch / TINY_PARAMS_FILE).exists():
        shutil.copy2(scratch / TINY_PARAMS_FILE, out / TINY_PARAMS_FILE)
    return info


def _pretrain_vision(params: Params, root: Path, scratch: Path, dest: Path) -> list[dict]:
    """Dense ViT pre-training on the train split (training/vision_pretrain.py); saves to ``dest``."""
    from anomseer.modeling.loading import load_model_and_processor
    from anomseer.render import load_image
    from anomseer.training.vision_pretrain import pretrain_vision

    base = params.base
    samples = datasets.load_split(root, "train")
    images = [load_image(datasets.image_path(root, "train", s.uid)) for s in samples]
    model, processor = load_model_and_processor(scratch)

    def say(epoch: int, epochs: int, record: dict) -> None:
        print(
            f"vision pre-training epoch {epoch}/{epochs}: loss {record['loss']:.3f}, "
            f"class accuracy {record['class_accuracy']:.3f}, column F1 {record['column_f1']:.3f} ({record['seconds']:.0f} s)",
            flush=True,
        )

    history = pretrain_vision(
        model, processor, images, [s.label for s in samples], [s.intervals for s in samples], [s.length for s in samples],
        epochs=base.vision_epochs, learning_rate=base.vision_learning_rate, batch_size=base.vision_batch_size,
        seed=base.vision_seed, progress=say,
    )
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    return history


def _log(params: Params, root: Path, stage: str, model_out: Path, sections: dict, history: list, summary: dict) -> dict:
    from anomseer.registry import log_model_run

    # Learning curves for the report; per-step timings stay in MLflow (they would change the hash).
    stable_history, _ = split_volatile(history)
    (model_out / "history.json").write_text(json.dumps(stable_history, default=float) + "\n")
    info = log_model_run(root, params.tracking, stage, sections, history, model_out, summary)
    return {**summary, **info}


def run_sft_checkpoint(params: Params, root: Path) -> dict:
    """SFT of the base model on image + prompt -> expert trace + answer (TRL SFTTrainer)."""
    import dataclasses

    from anomseer.inference import write_model_meta
    from anomseer.training.sft import run_sft

    root = Path(root)
    out = model_dir(root, "sft_checkpoint")
    rows = datasets.training_rows(root, "train")
    resume = _guard_resume(out, _params_fingerprint(params.sft, params.model, params.data))
    result = run_sft(model_dir(root, "base_model"), rows, out, params.sft, resume=resume)
    _finish_model(out)
    write_model_meta(out, params.data.length, params.render)
    history = [{"step": s, "loss": l} for s, l in result["loss_curve"]]
    history += [{"step": s, "token_accuracy": a} for s, a in result.get("token_accuracy_curve", [])]
    summary = {k: result[k] for k in ("steps", "final_loss", "wall_seconds", "samples_per_second", "train_rows") if k in result}
    summary["loss_start"] = result["loss_curve"][0][1] if result["loss_curve"] else None
    sections = {"sft": dataclasses.asdict(params.sft), "model": dataclasses.asdict(params.model), "profile": params.profile}
    return _write_summary(out / "summary.json", _log(params, root, "sft_checkpoint", out, sections, history, summary))


def run_timerpo_stage(name: str, params: Params, root: Path) -> dict:
    """TimerPO (or one of its ablations) from the SFT checkpoint."""
    import dataclasses

    from anomseer.inference import write_model_meta
    from anomseer.training.timerpo import run_timerpo

    root = Path(root)
    tp = dataclasses.replace(params.timerpo, **ABLATIONS[name])
    out = model_dir(root, name)
    rows = datasets.training_rows(root, "train")
    resume = _guard_resume(out, _params_fingerprint(tp, params.reward, params.sft, params.model, params.data))
    result = run_timerpo(model_dir(root, "sft_checkpoint"), rows, out, tp, resume=resume, reward_params=params.reward)
    _finish_model(out)
    write_model_meta(out, params.data.length, params.render)
    history = [dict(rec) for rec in result["log_history"] if "step" in rec]
    summary = {k: result[k] for k in ("global_step", "wall_seconds", "reward_start", "reward_end") if k in result}
    summary["ablation"] = ABLATIONS[name] or "none"
    sections = {"timerpo": dataclasses.asdict(tp), "reward": dataclasses.asdict(params.reward), "profile": params.profile}
    return _write_summary(out / "summary.json", _log(params, root, name, out, sections, history, summary))


# --------------------------------------------------------------------------- evaluation and promotion

EVALUATED_STAGES = ("sft_checkpoint", *ABLATIONS, "base_model")  # SFT first: word shifts are relative to it
REPORT_DIR = "data/reports"


def run_evaluation_report(params: Params, root: Path) -> dict:
    """Every lineage model (and the current champion, so promotion compares on the same set) and
    the baselines on the eval and held-out splits; metrics, plots data and a report."""
    import tempfile

    from anomseer import registry
    from anomseer.evaluation.run import evaluate

    root = Path(root)
    out = root / REPORT_DIR
    models = {name: model_dir(root, name) for name in EVALUATED_STAGES}
    with tempfile.TemporaryDirectory(prefix="anomseer-champion-") as tmp:
        champion = registry.version_for_alias(root, params.tracking, registry.CHAMPION)
        if champion is not None:
            uri = f"models:/{params.tracking.registered_model}@{registry.CHAMPION}"
            models["champion"] = registry.resolve_model_dir(root, params.tracking, uri, dst=Path(tmp))
        results = evaluate(
            root, params.evaluation, models, out, expert_params=params.expert, cache_dir=out / "completions"
        )
    metrics = results["metrics"]
    headline = {"report_path": results["report"], "skipped": sorted(results["skipped"])}
    for name in ("timerpo_checkpoint", "sft_checkpoint", "baseline_best"):
        for key in ("accuracy", "aff_f1", "score"):
            value = metrics.get(name, {}).get("eval", {}).get(key)
            if value is not None:
                headline[f"{name}.{key}"] = round(float(value), 4)
    return headline


def run_promotion(params: Params, root: Path) -> dict:
    """Promote the TimerPO checkpoint to ``champion`` only if it beats the champion (or, for the
    first champion, the best baseline) on the same eval set."""
    from anomseer import registry

    root = Path(root)
    from anomseer.evaluation.run import promotion_metrics

    metrics = json.loads((root / REPORT_DIR / "metrics.json").read_text())
    cand = params.promotion.candidate
    challenger = promotion_metrics(metrics, cand, "eval")
    champion = metrics.get("champion", {}).get("eval")
    decision = registry.promote(root, params.tracking, params.promotion, cand, challenger, champion)
    decision["candidate"] = cand
    return _write_summary(root / "data" / "promotion.json", decision)


# --------------------------------------------------------------------------- the lineage

STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            "synthetic_series",
            (),
            ("data",),
            ("data/series",),
            deps=("anomseer/series",),
            description="AnomLLM train/eval series and the VisualTimeAnomaly held-out set.",
        ),
        Stage(
            "rendered_images",
            ("synthetic_series",),
            ("render",),
            ("data/images",),
            deps=("anomseer/render.py",),
            description="One clean line plot per series (no ground-truth shading).",
        ),
        Stage(
            "expert_traces",
            ("synthetic_series",),
            ("expert",),
            ("data/traces",),
            deps=("anomseer/expert", "anomseer/task.py"),
            description="Verified expert chain-of-thought and the full SFT target per series.",
        ),
        Stage(
            "base_model",
            ("synthetic_series", "rendered_images", "expert_traces"),
            ("data", "render", "model", "base"),
            ("data/models/base_model",),
            deps=("anomseer/modeling", "anomseer/training/vision_pretrain.py", "anomseer/training/align.py"),
            description=(
                "Tiny Qwen2.5-VL from scratch (tokenizer trained on the trace corpus), ViT pre-trained on "
                "class + column targets, decoder warmed up on short answers; or a pretrained Qwen2.5-VL."
            ),
        ),
        Stage(
            "sft_checkpoint",
            ("base_model", "rendered_images", "expert_traces"),
            ("sft", "tracking"),
            ("data/models/sft_checkpoint",),
            deps=("anomseer/training/sft.py",),
            description="SFT on image + prompt -> expert trace + answer; an MLflow run and model version.",
        ),
        *(
            Stage(
                name,
                ("sft_checkpoint", "rendered_images", "expert_traces"),
                ("timerpo", "reward", "tracking"),
                (f"data/models/{name}",),
                deps=("anomseer/training/timerpo.py", "anomseer/training/ot.py", "anomseer/training/advantages.py"),
                description=(
                    "TimerPO from the SFT checkpoint (GRPO + OT-grounded, projected advantage)."
                    if not ABLATIONS[name]
                    else f"TimerPO ablation {ABLATIONS[name]} from the SFT checkpoint."
                ),
            )
            for name in ABLATIONS
        ),
        Stage(
            "evaluation_report",
            ("synthetic_series", "rendered_images", "expert_traces", "base_model", "sft_checkpoint", *ABLATIONS),
            ("evaluation", "reward"),
            (f"{REPORT_DIR}/report.md", f"{REPORT_DIR}/figures", f"{REPORT_DIR}/completions", f"{REPORT_DIR}/results.json"),
            deps=("anomseer/evaluation", "anomseer/metrics.py"),
            metrics=(f"{REPORT_DIR}/metrics.json",),
            plots=(f"{REPORT_DIR}/plots",),
            persist=(f"{REPORT_DIR}/completions",),
            description="Models and baselines on eval + held-out splits: metrics with 95% CIs, figures, report.",
        ),
        Stage(
            "promotion",
            ("evaluation_report",),
            ("promotion", "tracking"),
            (),
            deps=("anomseer/registry.py",),
            metrics=("data/promotion.json",),
            description="Set the MLflow `champion` alias when the TimerPO checkpoint wins; record why.",
        ),
    )
}

RUNNERS: dict[str, Callable[[Params, Path], dict]] = {
    "synthetic_series": run_synthetic_series,
    "rendered_images": run_rendered_images,
    "expert_traces": run_expert_traces,
    "base_model": run_base_model,
    "sft_checkpoint": run_sft_checkpoint,
    **{name: (lambda n: lambda params, root: run_timerpo_stage(n, params, root))(name) for name in ABLATIONS},
    "evaluation_report": run_evaluation_report,
    "promotion": run_promotion,
}


def run_stage(name: str, params: Params, root: Path) -> dict:
    if name not in RUNNERS:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(RUNNERS)}")
    return RUNNERS[name](params, Path(root))


def dvc_pipeline() -> dict:
    """``dvc.yaml`` as data, derived from :data:`STAGES` (``anomseer dvc-yaml`` writes it)."""
    stages = {}
    for stage in STAGES.values():
        deps = list(stage.deps) + [p for up in stage.upstream for p in (*STAGES[up].outs, *STAGES[up].metrics)]
        entry: dict = {"cmd": f"anomseer {stage.name}", "deps": deps, "params": list(stage.params)}
        if stage.outs:
            entry["outs"] = [{o: {"persist": True}} if o in stage.persist else o for o in stage.outs]
        if stage.metrics:
            entry["metrics"] = [{m: {"cache": False}} for m in stage.metrics]
        if stage.plots:
            entry["plots"] = [{p: {"cache": False}} for p in stage.plots]
        if stage.description:
            entry["desc"] = stage.description
        stages[stage.name] = entry
    return {"stages": stages}
