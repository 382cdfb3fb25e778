"""Run every model and baseline on the eval and held-out splits, score them, write the report.

:func:`evaluate` is the evaluation stage's whole body. For each split it

1. answers every series with the label-free baselines (:mod:`.baselines`), the class-prior
   localizer applied to the true labels (``oracle_class+class_prior``) and, for each model, to
   that model's predicted labels (``<model>+class_prior``);
2. generates one completion per series with every model, parses it and counts the numeric claims
   in its reasoning that the series bear out;
3. scores everything with the same code (:func:`.scoring.score_records`).

Long jobs resume. Completions are cached per (model, split) in
``<cache_dir>/<model>__<split>.jsonl``: a header line with a fingerprint of everything that
decides the text (the model folder's file contents, the generation params, the split file's
bytes, the expert params the claim counts use), then one row per series, appended chunk by chunk
as generation goes. A rerun reuses every row whose fingerprint matches, so a finished model costs
nothing and a killed run continues where it stopped; a changed model or split starts that file
over. Baseline answers are cached the same way (the blind expert costs ~0.05 s per series).

Outputs in ``out_dir``: ``metrics.json`` (nested numbers only, for ``dvc metrics``),
``results.json`` (everything: CIs, confusion matrices, reasoning metrics, skipped models),
``report.md`` with ``figures/`` and ``plots/`` (see :mod:`.report`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from anomseer import datasets
from anomseer.evaluation.baselines import ClassPriorLocalizer, label_free_baselines
from anomseer.evaluation.params import EvaluationParams
from anomseer.evaluation.reasoning import claim_verification, word_shift
from anomseer.evaluation.scoring import score_records

DEFAULT_SPLITS = ("eval", "heldout")
ORACLE = "oracle_class+class_prior"
CLASS_PRIOR_SUFFIX = "+class_prior"
BASELINE_BEST = "baseline_best"
#: Bump when the cache layout or what a row means changes: old caches are then ignored.
CACHE_VERSION = 1
#: Files of a model folder that do not change what it generates (left out of its fingerprint).
_NOT_MODEL_FILES = {"history.json", "summary.json", "run_info.json"}
#: Flat metric name -> (scoring metric) for metrics.json.
_FLAT = {
    "accuracy": "accuracy", "p": "P", "r": "R", "f1": "F1", "aff_p": "AffP", "aff_r": "AffR", "aff_f1": "AffF1",
    "well_formed": "well_formed", "score": "score",
}


def evaluate(
    root,
    params: EvaluationParams | None = None,
    models: Mapping[str, Path] | None = None,
    out_dir=None,
    progress: Callable[[str], None] | None = None,
    *,
    expert_params=None,
    cache_dir=None,
    splits: tuple[str, ...] = DEFAULT_SPLITS,
) -> dict:
    """Evaluate ``models`` and the baselines on ``splits``; write metrics, results and the report.

    Args:
        root: project root with the ``anomseer.datasets`` layout (series, images; the ``train``
            split fits the class-prior localizer).
        params: generation, bootstrap and baseline settings (defaults if None).
        models: display name -> model folder. A missing folder is reported and skipped (listed
            under ``results["skipped"]`` and in the report), never silently dropped.
        out_dir: where outputs go (default ``<root>/data/evaluation``).
        progress: called with one line of text per step (default: print to stderr).
        expert_params: the :class:`~anomseer.expert.ExpertParams` of the traces (blind expert and
            claim verification use the same thresholds).
        cache_dir: completion cache (default ``<out_dir>/completions``). Point it outside
            ``out_dir`` when a tool deletes outputs before rerunning (``dvc repro`` does).
        splits: which splits to evaluate.

    Returns:
        the results dict written to ``results.json``, plus ``"metrics"`` (what ``metrics.json``
        holds) and ``"report"`` (the report's path).
    """
    from anomseer.evaluation.report import write_report

    params = params or EvaluationParams()
    params.validate()
    root = Path(root)
    out_dir = Path(out_dir) if out_dir is not None else root / "data" / "evaluation"
    cache_dir = Path(cache_dir) if cache_dir is not None else out_dir / "completions"
    say = progress or _print
    models = dict(models or {})
    out_dir.mkdir(parents=True, exist_ok=True)

    available, skipped = {}, {}
    for name, path in models.items():
        _check_name(name)
        reason = _missing_model_reason(Path(path))
        if reason:
            skipped[name] = reason
            say(f"SKIPPED model {name!r}: {reason}")
        else:
            available[name] = Path(path)

    localizer = _fit_class_prior(root, say)
    runner = _ModelRunner(params, say)
    samples_by_split, records, entries = {}, {}, {}
    split_info = {}
    for split in splits:
        samples = datasets.load_split(root, split)
        if not samples:
            raise ValueError(f"split {split!r} under {root} holds no series; rerun the synthetic_series stage")
        samples_by_split[split] = samples
        split_hash = _file_hash(datasets.series_path(root, split))
        split_info[split] = {
            "n": len(samples),
            "normal_share": sum(not s.intervals for s in samples) / len(samples),
            "series_sha256": split_hash,
        }
        say(f"[{split}] {len(samples)} series")
        for name, preds in _baseline_answers(samples, split, split_hash, params, expert_params, cache_dir, say).items():
            records.setdefault(name, {})[split] = [_record(s, split, iv, lab, True) for s, (iv, lab) in zip(samples, preds)]
            entries.setdefault(name, "baseline")
        if localizer is not None:
            records.setdefault(ORACLE, {})[split] = [
                _record(s, split, localizer.predict(s.label, s.length), s.label, True) for s in samples
            ]
            entries.setdefault(ORACLE, "oracle")
        for name, path in available.items():
            rows = runner.completions(name, path, root, split, samples, split_hash, expert_params, cache_dir)
            if rows is None:  # the folder could not be loaded: reported by the runner
                skipped[name] = runner.failures[name]
                continue
            model_records = [_model_record(s, split, row) for s, row in zip(samples, rows)]
            records.setdefault(name, {})[split] = model_records
            entries.setdefault(name, "model")
            if localizer is not None:
                records.setdefault(name + CLASS_PRIOR_SUFFIX, {})[split] = [
                    _class_prior_record(s, split, rec, localizer) for s, rec in zip(samples, model_records)
                ]
                entries.setdefault(name + CLASS_PRIOR_SUFFIX, "class_prior")
    runner.release()
    for name in skipped:  # a model that failed on a later split is dropped everywhere
        for gone in (name, name + CLASS_PRIOR_SUFFIX):
            records.pop(gone, None)
            entries.pop(gone, None)

    say("scoring")
    scores = {
        name: {split: score_records(recs, params.n_boot, params.seed) for split, recs in by_split.items()}
        for name, by_split in records.items()
    }
    model_names = [n for n, kind in entries.items() if kind == "model"]
    reasoning = {
        name: {
            split: claim_verification(records[name][split], {s.uid: s for s in samples_by_split[split]}, expert_params)
            for split in records[name]
        }
        for name in model_names
    }
    shifts = {}
    if len(model_names) >= 2 and "eval" in splits:
        first = model_names[0]
        for other in model_names[1:]:
            shifts[f"{first} -> {other}"] = word_shift(
                [r["reasoning"] for r in records[first]["eval"]], [r["reasoning"] for r in records[other]["eval"]]
            )
    metrics = flat_metrics(scores, entries, reasoning)
    results = {
        "params": dataclasses.asdict(params),
        "splits": split_info,
        "models": {name: str(path) for name, path in models.items()},
        "skipped": skipped,
        "entries": entries,
        "scores": scores,
        "reasoning": reasoning,
        "word_shift": shifts,
        "class_prior": localizer.to_dict() if localizer is not None else None,
        "best_model": _best(scores, model_names, splits),
        "best_baseline": _best(scores, [n for n, k in entries.items() if k == "baseline"], splits),
    }
    _write_json(out_dir / "metrics.json", metrics)
    _write_json(out_dir / "results.json", results)
    say("writing the report")
    report = write_report(
        results,
        out_dir,
        samples=samples_by_split,
        records=records,
        model_dirs=available,
        n_examples=params.n_examples,
    )
    say(f"done: {out_dir / 'metrics.json'}, {report}")
    return {**results, "metrics": metrics, "report": str(report)}


def flat_metrics(scores: Mapping, entries: Mapping[str, str], reasoning: Mapping | None = None) -> dict:
    """``{entry: {split: {metric: number}}}`` plus ``baseline_best`` (numbers only, for DVC).

    Per split: the overall means (accuracy, p, r, f1, aff_p, aff_r, aff_f1, well_formed, score, n),
    the same on anomalous series only (``anomalous_*`` for accuracy, aff_f1, score), accuracy and
    aff_f1 per paper group (``aff_f1_freq``...), and for models the verified share of their
    numeric claims. ``baseline_best`` holds, per metric, the best value any label-free baseline
    reached (so "beats the best baseline" is checked against the strongest one on every metric).
    """
    metrics: dict = {}
    for name, by_split in scores.items():
        metrics[name] = {}
        for split, sc in by_split.items():
            groups = sc["groups"]
            flat = {key: groups["overall"][metric]["mean"] for key, metric in _FLAT.items()}
            flat["n"] = groups["overall"]["n"]
            if "anomalous" in groups:
                for key in ("accuracy", "aff_f1", "score"):
                    flat[f"anomalous_{key}"] = groups["anomalous"][_FLAT[key]]["mean"]
            for group, summary in groups.items():
                if group.startswith("paper:") and group != "paper:heldout":
                    g = group.split(":", 1)[1]
                    flat[f"accuracy_{g}"] = summary["accuracy"]["mean"]
                    flat[f"aff_f1_{g}"] = summary["AffF1"]["mean"]
            share = ((reasoning or {}).get(name) or {}).get(split, {}).get("verified_share")
            if share is not None:
                flat["claims_verified_share"] = share
            metrics[name][split] = flat
    best: dict = {}
    for name, kind in entries.items():
        if kind != "baseline" or name not in metrics:
            continue
        for split, flat in metrics[name].items():
            target = best.setdefault(split, {})
            for key, value in flat.items():
                if key != "n":
                    target[key] = max(target.get(key, value), value)
    metrics[BASELINE_BEST] = best
    return metrics


def promotion_metrics(metrics: Mapping, name: str, split: str = "eval") -> dict:
    """The flat metrics :func:`anomseer.registry.should_promote` reads for ``name`` on ``split``:
    the model's own (``score``, ``accuracy``, ...) plus ``baseline_<metric>`` from ``baseline_best``."""
    if name not in metrics or split not in metrics[name]:
        raise ValueError(f"no metrics for {name!r} on split {split!r}; evaluated: {sorted(metrics)}")
    out = dict(metrics[name][split])
    out.update({f"baseline_{k}": v for k, v in metrics.get(BASELINE_BEST, {}).get(split, {}).items()})
    return out


# --------------------------------------------------------------------------------------------
# records


def _record(sample, split: str, intervals, label, well_formed: bool) -> dict:
    return {
        "uid": sample.uid,
        "family": sample.family,
        "split": split,
        "true_intervals": [list(iv) for iv in sample.intervals],
        "true_label": sample.label,
        "length": sample.length,
        "pred_intervals": None if intervals is None else [[int(s), int(e)] for s, e in intervals],
        "pred_label": label,
        "well_formed": bool(well_formed),
    }


def _model_record(sample, split: str, row: dict) -> dict:
    from anomseer.task import parse_completion

    parsed = parse_completion(row["completion"], sample.length)
    rec = _record(sample, split, parsed.intervals, parsed.label, parsed.well_formed)
    rec.update(reasoning=parsed.reasoning, completion=row["completion"], n_claims=row["n_claims"], n_verified=row["n_verified"])
    return rec


def _class_prior_record(sample, split: str, model_record: dict, localizer: ClassPriorLocalizer) -> dict:
    """The model's label with the class's typical interval: right class, no reading of positions.

    An answer without a label stays unparseable (intervals None) so the diagnostic never scores
    better than the model on series where the model said nothing usable.
    """
    label = model_record["pred_label"]
    intervals = None if label is None else localizer.predict(label, sample.length)
    return _record(sample, split, intervals, label, label is not None)


def _fit_class_prior(root: Path, say) -> ClassPriorLocalizer | None:
    try:
        train = datasets.load_split(root, "train")
        return ClassPriorLocalizer().fit(train)
    except FileNotFoundError as error:
        say(f"SKIPPED class-prior baselines: no train split to fit them on ({error})")
    except ValueError as error:
        say(f"SKIPPED class-prior baselines: {error}")
    return None


def _best(scores: Mapping, names, splits) -> str | None:
    split = "eval" if "eval" in splits else (splits[0] if splits else None)
    ranked = [(scores[n][split]["score"], n) for n in names if n in scores and split in scores[n]]
    return max(ranked)[1] if ranked else None


# --------------------------------------------------------------------------------------------
# baselines (cached: the blind expert scans every series)


def _baseline_answers(samples, split, split_hash, params, expert_params, cache_dir: Path, say) -> dict:
    fingerprint = _hash_json(
        {
            "version": CACHE_VERSION,
            "split": split_hash,
            "low_pct": params.low_pct,
            "high_pct": params.high_pct,
            "seed": params.seed,
            "expert": _params_dict(expert_params),
        }
    )
    path = cache_dir / f"baselines__{split}.json"
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
        except json.JSONDecodeError:
            cached = {}
        if cached.get("fingerprint") == fingerprint:
            say(f"[{split}] baselines: cached")
            return {name: [([tuple(iv) for iv in ivs], lab) for ivs, lab in preds] for name, preds in cached["answers"].items()}
    answers = {}
    for name, detect in label_free_baselines(params.low_pct, params.high_pct, params.seed, expert_params).items():
        say(f"[{split}] baseline {name}")
        answers[name] = [detect(s) for s in samples]
    stored = {n: [[[list(iv) for iv in ivs], lab] for ivs, lab in preds] for n, preds in answers.items()}
    _write_json(path, {"fingerprint": fingerprint, "answers": stored})
    return answers


# --------------------------------------------------------------------------------------------
# models (cached, resumable completions)


class _ModelRunner:
    """Generates completions with one model at a time, loading each model at most once."""

    def __init__(self, params: EvaluationParams, say):
        self.params = params
        self.say = say
        self.failures: dict[str, str] = {}
        self._loaded: tuple[str, object, object] | None = None
        self._hashes: dict[str, str] = {}

    def completions(self, name, path: Path, root: Path, split: str, samples, split_hash, expert_params, cache_dir: Path):
        """Rows ``{uid, completion, n_claims, n_verified}`` in sample order, or None if unloadable."""
        if name in self.failures:
            return None
        if name not in self._hashes:
            self._hashes[name] = model_fingerprint(path)
        p = self.params
        fingerprint = _hash_json(
            {
                "version": CACHE_VERSION,
                "model": self._hashes[name],
                "split": split_hash,
                "generation": {k: getattr(p, k) for k in ("max_new_tokens", "temperature", "batch_size", "seed")},
                "expert": _params_dict(expert_params),
            }
        )
        cache = cache_dir / f"{name}__{split}.jsonl"
        done = _read_cache(cache, fingerprint)
        uids = [s.uid for s in samples]
        if all(u in done for u in uids):
            self.say(f"[{split}] {name}: {len(uids)} completions cached")
            return [done[u] for u in uids]
        if not done:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"fingerprint": fingerprint}) + "\n")
        else:
            self.say(f"[{split}] {name}: resuming, {len(done)}/{len(uids)} completions cached")
        loaded = self._load(name, path)
        if loaded is None:
            return None
        model, processor = loaded
        chunk = p.batch_size * max(1, 64 // p.batch_size)
        for lo in range(0, len(samples), chunk):
            part = samples[lo : lo + chunk]
            if all(s.uid in done for s in part):
                continue
            rows = self._generate(model, processor, root, split, part, seed=p.seed + lo, expert_params=expert_params)
            with cache.open("a") as fh:
                for row in rows:
                    fh.write(json.dumps(row) + "\n")
                    done[row["uid"]] = row
            self.say(f"[{split}] {name}: {min(lo + chunk, len(samples))}/{len(samples)} completions")
        return [done[u] for u in uids]

    def _generate(self, model, processor, root, split, samples, seed, expert_params) -> list[dict]:
        from anomseer.evaluation.reasoning import claim_counts
        from anomseer.modeling.generation import generate_completions
        from anomseer.render import load_image
        from anomseer.task import build_prompt, parse_completion

        p = self.params
        images = [load_image(datasets.image_path(root, split, s.uid)) for s in samples]
        texts = generate_completions(
            model, processor, images, [build_prompt(s.length) for s in samples],
            max_new_tokens=p.max_new_tokens, temperature=p.temperature, batch_size=p.batch_size, seed=seed,
        )
        rows = []
        for s, text in zip(samples, texts):
            reasoning = parse_completion(text, s.length).reasoning
            n_claims, n_verified = claim_counts({"uid": s.uid, "reasoning": reasoning}, {s.uid: s}, expert_params)
            rows.append({"uid": s.uid, "completion": text, "n_claims": n_claims, "n_verified": n_verified})
        return rows

    def _load(self, name: str, path: Path):
        if self._loaded is not None and self._loaded[0] == name:
            return self._loaded[1:]
        self.release()
        from anomseer.modeling.loading import load_model_and_processor

        device = _device()
        self.say(f"loading {name} from {path} on {device or 'cpu'}")
        try:
            model, processor = load_model_and_processor(path, device=device)
        except (FileNotFoundError, ValueError, OSError) as error:
            self.failures[name] = f"could not load {path}: {error}"
            self.say(f"SKIPPED model {name!r}: {self.failures[name]}")
            return None
        self._loaded = (name, model, processor)
        return model, processor

    def release(self) -> None:
        """Drop the loaded model (before loading the next one, so two never share memory)."""
        self._loaded = None


def model_fingerprint(path: Path) -> str:
    """SHA-256 over the names and contents of the files that decide what a model folder generates.

    Contents rather than mtimes: ``dvc checkout`` rewrites files (new mtimes) without changing
    them, and a content hash keeps their cached completions valid. Training logs
    (``history.json``, ``summary.json``) and sub-folders (intermediate checkpoints) are left out.
    """
    digest = hashlib.sha256()
    files = sorted(f for f in Path(path).iterdir() if f.is_file() and f.name not in _NOT_MODEL_FILES)
    for f in files:
        digest.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def _read_cache(path: Path, fingerprint: str) -> dict[str, dict]:
    """Rows of a completion cache whose header matches ``fingerprint`` ({} otherwise).

    A torn last line (a run killed mid-write) is ignored: that chunk is generated again.
    """
    if not path.is_file():
        return {}
    rows: dict[str, dict] = {}
    with path.open() as fh:
        try:
            header = json.loads(fh.readline() or "{}")
        except json.JSONDecodeError:
            return {}
        if header.get("fingerprint") != fingerprint:
            return {}
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            if {"uid", "completion", "n_claims", "n_verified"} <= row.keys():
                rows[row["uid"]] = row
    return rows


def _missing_model_reason(path: Path) -> str | None:
    if not path.exists():
        return f"no model folder at {path} (run its training stage first, e.g. `dvc repro`)"
    if not path.is_dir():
        return f"{path} is a file, not a model folder"
    if not (path / "config.json").is_file():
        return f"{path} has no config.json: not a saved model folder (training may not have finished)"
    return None


def _check_name(name) -> None:
    if not isinstance(name, str) or not name or any(c in name for c in "/\\\0") or name.endswith(CLASS_PRIOR_SUFFIX):
        raise ValueError(f"model name {name!r} must be a non-empty string without path separators, not ending in {CLASS_PRIOR_SUFFIX!r}")
    if name in {BASELINE_BEST, ORACLE, "always_empty", "blind_expert", "random_intervals", "percentile_threshold"}:
        raise ValueError(f"model name {name!r} is taken by a baseline or by {BASELINE_BEST!r}; rename the model")


def _device() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return "cuda" if torch.cuda.is_available() else None


def _params_dict(params) -> dict | None:
    return dataclasses.asdict(params) if params is not None else None


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _hash_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _write_json(path: Path, obj) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _print(message: str) -> None:
    print(f"[evaluation] {message}", file=sys.stderr, flush=True)


__all__ = ["BASELINE_BEST", "CLASS_PRIOR_SUFFIX", "ORACLE", "evaluate", "flat_metrics", "model_fingerprint", "promotion_metrics"]
