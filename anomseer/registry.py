"""MLflow tracking and the model registry: every materialized model is a run and a registered
version; aliases ``challenger`` / ``champion`` mark promotion.

Defaults need no server: ``sqlite:///<root>/mlflow.db`` with artifacts in ``<root>/mlartifacts``,
overridden by ``MLFLOW_TRACKING_URI`` or ``tracking.tracking_uri``. Models are logged as
"models from code" pyfuncs (:mod:`anomseer.pyfunc_model`), so loading never unpickles anything;
the Hugging Face folder travels as an artifact.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

CHALLENGER = "challenger"
CHAMPION = "champion"


@dataclass(frozen=True)
class TrackingParams:
    """Attributes:
    tracking_uri: empty = ``$MLFLOW_TRACKING_URI`` or ``sqlite:///<root>/mlflow.db``.
    experiment: MLflow experiment of all runs.
    registered_model: registered model that every checkpoint becomes a version of.
    """

    tracking_uri: str = ""
    experiment: str = "anomseer"
    registered_model: str = "anomseer"

    def validate(self) -> None:
        if not self.experiment or not self.registered_model:
            raise ValueError("experiment and registered_model must be non-empty names")


@dataclass(frozen=True)
class PromotionParams:
    """When a challenger replaces the champion (see :func:`should_promote`).

    Attributes:
        candidate: the lineage stage whose model challenges the champion.
        primary_metric: the eval-split metric that decides (higher is better).
        secondary_metric: must not drop by more than ``max_secondary_drop``.
        min_improvement: the primary metric must improve by more than this (ties never promote).
        max_secondary_drop: tolerated drop of the secondary metric.
    """

    candidate: str = "timerpo_checkpoint"
    primary_metric: str = "score"
    secondary_metric: str = "accuracy"
    min_improvement: float = 0.0
    max_secondary_drop: float = 0.02

    def validate(self) -> None:
        if self.min_improvement < 0:
            raise ValueError(f"min_improvement must be >= 0, got {self.min_improvement}")
        if not 0 <= self.max_secondary_drop <= 1:
            raise ValueError(f"max_secondary_drop must be in [0, 1], got {self.max_secondary_drop}")


def tracking_uri(root: Path, params: TrackingParams) -> str:
    if params.tracking_uri:
        return params.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def setup(root: Path, params: TrackingParams):
    """Point MLflow at the project's store and experiment; returns the experiment id."""
    import logging

    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri(root, params))
    exp = mlflow.get_experiment_by_name(params.experiment)
    if exp is None:
        artifacts = (Path(root).resolve() / "mlartifacts").as_uri()
        return mlflow.create_experiment(params.experiment, artifact_location=artifacts)
    return exp.experiment_id


def _flatten(prefix: str, value: Any, out: dict) -> dict:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
    return out


PIP_REQUIREMENTS = [
    "torch>=2.6",
    "transformers>=5.2,<5.3",
    "numpy",
    "pandas",
    "matplotlib",
    "pillow",
    "scipy",
    "stumpy",
]


def log_model_run(
    root: Path,
    tracking: TrackingParams,
    stage: str,
    params: Mapping[str, Any],
    history: list[Mapping[str, Any]],
    model_dir: Path,
    summary: Mapping[str, Any] | None = None,
) -> dict:
    """Log one materialized model: params, step curves, the model (pyfunc + HF folder), a new
    registered version with alias ``challenger``. Returns run id, version and a UI link.

    ``history`` is a list of step records (``{"step": int, "loss": ..., ...}``); every numeric key
    becomes a curve.
    """
    import mlflow
    from mlflow import MlflowClient

    exp_id = setup(root, tracking)
    flat = {k: v for k, v in _flatten("", dict(params), {}).items()}
    with mlflow.start_run(experiment_id=exp_id, run_name=stage) as run:
        mlflow.set_tags({"stage": stage, "anomseer.kind": "checkpoint"})
        # MLflow caps param values at 6000 chars; longer ones are truncated deliberately.
        mlflow.log_params({k: str(v)[:6000] for k, v in flat.items()})
        for i, rec in enumerate(history):
            step = int(rec.get("step", i))
            metrics = {
                k.replace("/", "."): float(v)
                for k, v in rec.items()
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            }
            if metrics:
                mlflow.log_metrics(metrics, step=step)
        for k, v in (summary or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                mlflow.log_metric(f"final.{k}", float(v))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"hf_model": str(model_dir)},
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=tracking.registered_model,
            await_registration_for=0,
        )
        run_id = run.info.run_id
    client = MlflowClient()
    version = str(info.registered_model_version)
    client.set_model_version_tag(tracking.registered_model, version, "stage", stage)
    client.set_registered_model_alias(tracking.registered_model, CHALLENGER, version)
    # A per-stage alias lets the evaluation load each lineage model by name.
    client.set_registered_model_alias(tracking.registered_model, stage, version)
    return {
        "run_id": run_id,
        "model_version": version,
        "model_uri": f"models:/{tracking.registered_model}/{version}",
        # Where `make mlflow-ui` serves this store.
        "mlflow_run_url": f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs/{run_id}",
    }


def should_promote(
    challenger: Mapping[str, float] | None,
    champion: Mapping[str, float] | None,
    params: PromotionParams | None = None,
) -> tuple[bool, str]:
    """Decide promotion on metrics of the same eval set. Pure; returns (decision, reason).

    - A challenger without the primary metric (or a non-finite one) never promotes.
    - With no champion, the challenger is compared with ``challenger["baseline_<primary>"]`` when
      present (the best baseline): a first model must beat the baselines.
    - Otherwise the primary metric must exceed the champion's by more than ``min_improvement``
      (a tie never promotes, never demotes) and the secondary metric may not drop by more than
      ``max_secondary_drop``.
    """
    p = params or PromotionParams()
    key, key2 = p.primary_metric, p.secondary_metric

    def val(m, k):
        v = None if m is None else m.get(k)
        return float(v) if isinstance(v, (int, float)) and math.isfinite(float(v)) else None

    c = val(challenger, key)
    if c is None:
        return False, f"challenger has no finite '{key}'"
    if champion is None:
        base = val(challenger, f"baseline_{key}")
        if base is None:
            return False, f"no champion and no 'baseline_{key}' to beat: not promoting blindly"
        if c > base + p.min_improvement:
            return True, f"first champion: {key} {c:.4f} beats the best baseline {base:.4f}"
        return False, f"{key} {c:.4f} does not beat the best baseline {base:.4f}"
    ch = val(champion, key)
    if ch is None:
        return False, f"champion has no finite '{key}': refusing to compare"
    if not c > ch + p.min_improvement:
        return False, f"{key} {c:.4f} does not beat the champion's {ch:.4f} (+{p.min_improvement})"
    c2, ch2 = val(challenger, key2), val(champion, key2)
    if c2 is None or ch2 is None:
        return False, f"'{key2}' missing on one side: refusing to promote"
    if c2 < ch2 - p.max_secondary_drop:
        return False, f"{key2} drops from {ch2:.4f} to {c2:.4f} (more than {p.max_secondary_drop})"
    return True, f"{key} {c:.4f} beats the champion's {ch:.4f}; {key2} {c2:.4f} vs {ch2:.4f}"


def resolve_model_dir(root: Path, tracking: TrackingParams, uri: str, dst: Path | None = None) -> Path:
    """A local Hugging Face folder for ``uri``: a folder path as is, or a ``models:/NAME@alias``
    / ``models:/NAME/VERSION`` URI downloaded from the registry (its ``hf_model`` artifact)."""
    import tempfile

    local = Path(uri).expanduser()
    if local.is_dir():
        return local
    if not uri.startswith("models:/"):
        raise FileNotFoundError(f"{uri} is neither a model folder nor a models:/NAME@ALIAS URI")
    import mlflow
    from mlflow.exceptions import MlflowException

    setup(root, tracking)
    dst = Path(dst or tempfile.mkdtemp(prefix="anomseer-model-"))
    try:
        path = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except MlflowException as exc:
        msg = str(exc).splitlines()[0]
        raise FileNotFoundError(
            f"cannot load {uri} from the registry at {tracking_uri(root, tracking)} ({msg}); "
            "run `dvc repro` (or `anomseer promote`) to create a champion, or pass --model PATH"
        ) from None
    return _hf_artifact_dir(path, uri)


def _hf_artifact_dir(model_path: Path, uri: str) -> Path:
    """The folder of the ``hf_model`` artifact inside a downloaded pyfunc (named in ``MLmodel``)."""
    import yaml

    try:
        mlmodel = yaml.safe_load((model_path / "MLmodel").read_text())
        rel = mlmodel["flavors"]["python_function"]["artifacts"]["hf_model"]["path"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        raise FileNotFoundError(f"{uri} has no hf_model artifact; it was not logged by AnomSeer") from None
    hf = model_path / rel
    if not hf.is_dir():
        raise FileNotFoundError(f"{uri}: its hf_model artifact {rel} is missing from the download")
    return hf


def version_for_alias(root: Path, tracking: TrackingParams, alias: str):
    """The registered version behind ``alias`` or None when the alias (or model) does not exist."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    setup(root, tracking)
    try:
        return MlflowClient().get_model_version_by_alias(tracking.registered_model, alias)
    except MlflowException:
        return None


def promote(
    root: Path,
    tracking: TrackingParams,
    params: PromotionParams,
    candidate_stage: str,
    challenger_metrics: Mapping[str, float] | None,
    champion_metrics: Mapping[str, float] | None,
) -> dict:
    """Mark the candidate stage's latest version ``challenger``; move ``champion`` to it only when
    :func:`should_promote` says so. The reason is recorded as version tags either way."""
    import datetime

    from mlflow import MlflowClient

    version = version_for_alias(root, tracking, candidate_stage)
    if version is None:
        raise FileNotFoundError(
            f"no registered version with alias '{candidate_stage}' in model '{tracking.registered_model}': "
            f"run the `{candidate_stage}` stage first"
        )
    client = MlflowClient()
    name, v = tracking.registered_model, version.version
    client.set_registered_model_alias(name, CHALLENGER, v)
    champion = version_for_alias(root, tracking, CHAMPION)
    if champion is not None and champion.version == v:
        return {"promoted": False, "reason": f"version {v} already is the champion", "version": v}
    decision, reason = should_promote(
        challenger_metrics, None if champion is None else (champion_metrics or {}), params
    )
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    client.set_model_version_tag(name, v, "promotion.decision", "promoted" if decision else "rejected")
    client.set_model_version_tag(name, v, "promotion.reason", reason)
    client.set_model_version_tag(name, v, "promotion.time", now)
    for k, val in (challenger_metrics or {}).items():
        client.set_model_version_tag(name, v, f"eval.{k}", f"{val:.6g}" if isinstance(val, float) else str(val))
    if decision:
        client.set_registered_model_alias(name, CHAMPION, v)
        client.update_model_version(name, v, description=f"Champion since {now}: {reason}")
    return {
        "promoted": decision,
        "reason": reason,
        "version": v,
        "previous_champion": None if champion is None else champion.version,
    }
