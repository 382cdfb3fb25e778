"""params.yaml: the single source of every result-affecting value.

The file is a fully resolved profile: ``profile: <name>`` plus one mapping per section. Each
section maps onto a frozen parameter dataclass that lives next to the code it configures (so the
code documents its own defaults); this module only knows which dataclass a section is and how to
check a file against it. Profiles are overlays on those defaults (``PROFILE_OVERRIDES``);
``anomseer params --profile smoke --out params.yaml`` writes a resolved file. DVC tracks the
sections stage by stage and Dagster reads the same file, so both see the same values.

Errors name the offending key (``timerpo.alpha``) and what to do, never a bare traceback.
"""

from __future__ import annotations

import copy
import json
import dataclasses
import importlib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# section -> "module:Class". Imported lazily: loading params must not import torch for a stage
# that does not need it.
SECTION_TYPES: dict[str, str] = {
    "data": "anomseer.datasets:DataParams",
    "render": "anomseer.render:RenderParams",
    "expert": "anomseer.expert.params:ExpertParams",
    "model": "anomseer.modeling.tiny:TinyModelParams",
    "base": "anomseer.modeling.source:BaseModelParams",
    "sft": "anomseer.training.sft_params:SFTParams",
    "timerpo": "anomseer.training.timerpo_params:TimerPOParams",
    "reward": "anomseer.rewards:RewardParams",
    "evaluation": "anomseer.evaluation.params:EvaluationParams",
    "promotion": "anomseer.registry:PromotionParams",
    "tracking": "anomseer.registry:TrackingParams",
}

PROFILES = ("tiny", "smoke", "paper")

# Overlays on the dataclass defaults. `tiny` is the CPU default; `smoke` is tiny shrunk to seconds
# for tests; `paper` is method.md section 6 (GPUs).
PROFILE_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        # Sized so `dvc repro` of the whole lineage stays well under an hour on 2 CPU cores.
        "data": {"train_per_family": 150, "eval_per_family": 25, "heldout_per_type": 10},
        "render": {"width_px": 448, "height_px": 112},
        "model": {"image_width": 448, "image_height": 112},
        # The from-scratch ViT is pre-trained densely, then the decoder warmed up on short answers
        # (modeling/source.py says why; measured in the README).
        "base": {"source": "tiny", "vision_epochs": 12, "align_steps": 600},
        "sft": {"epochs": 2.0, "per_device_batch_size": 8, "learning_rate": 5e-4, "logging_steps": 10, "save_steps": 50},
        # RL on a 4M-parameter model is fragile and its best step size depends on the SFT
        # checkpoint, which differs between CPUs (float kernels differ; README "Results").
        # Measured with `anomseer sweep-timerpo` from this machine's SFT checkpoint (82.5 / 50.3):
        # 5e-6 x 40 -> 85.5 / 52.1, 1e-5 x 40 -> 84.0 / 55.3, 1e-5 x 60 -> 84.0 / 55.3,
        # 2e-5 x 40 -> 87.5 / 60.3 (chosen); on another machine's SFT 1e-4 collapsed the policy
        # in 5 steps. Rollouts at temperature 1.0 are well-formed only ~half the time (0.7:
        # ~75%), so they sample at 0.7.
        "timerpo": {
            "max_steps": 40, "prompts_per_step": 8, "num_generations": 4, "max_completion_length": 200,
            "learning_rate": 2e-5, "temperature": 0.7, "save_steps": 4, "bf16": False,
        },
        "evaluation": {"max_new_tokens": 200, "batch_size": 25},
    },
    "smoke": {
        "data": {"train_per_family": 2, "eval_per_family": 1, "heldout_per_type": 1, "length": 250, "heldout_length": 100},
        "render": {"width_px": 224, "height_px": 56},
        "model": {
            "text_hidden_size": 64, "text_layers": 2, "text_heads": 2, "text_kv_heads": 1,
            "text_intermediate_size": 128, "mrope_section": [4, 6, 6], "max_position_embeddings": 1024,
            "vision_depth": 2, "vision_hidden_size": 32, "vision_heads": 2, "vision_intermediate_size": 64,
            "fullatt_block_indexes": [1], "window_size": 56, "image_width": 224, "image_height": 56,
            "vocab_size": 700, "max_int": 250,
        },
        "base": {"source": "tiny", "vision_epochs": 1, "vision_batch_size": 4, "align_steps": 2, "align_batch_size": 4},
        "sft": {"max_steps": 2, "per_device_batch_size": 4, "logging_steps": 1, "save_steps": 1},
        "timerpo": {"max_steps": 1, "prompts_per_step": 2, "num_generations": 2, "max_completion_length": 24, "save_steps": 1},
        "evaluation": {"max_new_tokens": 24, "n_boot": 50, "n_examples": 2},
    },
    "paper": {
        "data": {"train_per_family": 400, "eval_per_family": 400, "heldout_per_type": 100},
        "render": {"width_px": 1000, "height_px": 150},
        "base": {"source": "pretrained", "path": "Qwen/Qwen2.5-VL-3B-Instruct"},
        # method.md section 6: full fine-tuning with the vision tower trainable, bf16, 4 GPUs.
        "sft": {
            "epochs": 2.0, "per_device_batch_size": 4, "grad_accumulation": 4, "learning_rate": 1e-5,
            "max_length": 2048, "bf16": True, "gradient_checkpointing": True, "save_steps": 100,
        },
        "timerpo": {
            "epochs": 10.0, "prompts_per_step": 128, "num_generations": 5, "max_completion_length": 1024,
            "temperature": 1.0, "learning_rate": 1e-6, "weight_decay": 0.01, "max_grad_norm": 1.0,
            "bf16": True, "gradient_checkpointing": True, "use_vllm": True, "save_steps": 25,
        },
        "evaluation": {"max_new_tokens": 1024, "temperature": 0.4, "batch_size": 32},
    },
}


class ParamsError(ValueError):
    """A params file that cannot be used; the message names the key and the fix."""


def _cls(section: str):
    module, name = SECTION_TYPES[section].split(":")
    return getattr(importlib.import_module(module), name)


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def profile_dict(profile: str, sections: typing.Iterable[str] | None = None) -> dict[str, Any]:
    """The fully resolved params of a profile as plain YAML-able data."""
    if profile not in PROFILES:
        raise ParamsError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    out: dict[str, Any] = {"profile": profile}
    extra: dict[str, dict] = {}
    for name in ("tiny", profile) if profile == "smoke" else (profile,):
        extra = _merge(extra, PROFILE_OVERRIDES[name])
    for section in sections or SECTION_TYPES:
        defaults = dataclasses.asdict(_cls(section)())
        out[section] = _merge(defaults, extra.get(section, {}))
    return json.loads(json.dumps(out))  # plain YAML data: tuples become lists


def write_params(profile: str, path: str | Path) -> Path:
    """Write the resolved profile to ``path`` (normally ``params.yaml``)."""
    data = profile_dict(profile)
    path = Path(path)
    header = (
        f"# AnomSeer params, profile '{profile}'. Every result-affecting value lives here.\n"
        f"# Regenerate with: anomseer params --profile {profile} --out {path.name}\n"
    )
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None))
    return path


def _check_type(key: str, value: Any, hint: Any) -> Any:
    """Coerce/verify one scalar against the dataclass field's type; raise naming the key."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(key, value, arg)
            except ParamsError:
                continue
        raise ParamsError(f"params key '{key}' = {value!r} has the wrong type; expected {hint}")
    if origin is typing.Literal:
        if value not in args:
            raise ParamsError(f"params key '{key}' = {value!r} must be one of {list(args)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"params key '{key}' = {value!r} must be a list")
        inner = args[0] if args else Any
        items = [_check_type(f"{key}[{i}]", v, inner) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"params key '{key}' = {value!r} must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"params key '{key}' = {value!r} must be an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"params key '{key}' = {value!r} must be a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ParamsError(f"params key '{key}' = {value!r} must be a string")
        return value
    return value


def build_section(section: str, raw: Any):
    """Turn one YAML mapping into its validated dataclass."""
    cls = _cls(section)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"params section '{section}' must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ParamsError(
            f"unknown params key '{section}.{unknown[0]}'; known keys of '{section}': {', '.join(sorted(names))}"
        )
    kwargs = {k: _check_type(f"{section}.{k}", v, hints[k]) for k, v in raw.items()}
    obj = cls(**kwargs)
    try:
        obj.validate()
    except ValueError as exc:  # re-raise with the section in front so the key is fully named
        raise ParamsError(f"params section '{section}': {exc}") from None
    return obj


@dataclass(frozen=True)
class Params:
    """A loaded, validated params file. Sections are loaded on first access (lazy imports)."""

    profile: str
    raw: dict
    source: str

    def __getattr__(self, section: str):
        if section.startswith("_") or section not in SECTION_TYPES:
            raise AttributeError(section)
        cache = self.__dict__.setdefault("_cache", {})
        if section not in cache:
            cache[section] = build_section(section, self.raw.get(section))
        return cache[section]

    def validate_all(self) -> "Params":
        for section in SECTION_TYPES:
            getattr(self, section)
        # Cross-section consistency: the tiny model's processor must see plots of the rendered size.
        for model_key, render_key in (("image_width", "width_px"), ("image_height", "height_px")):
            if self.base.source == "tiny" and getattr(self.model, model_key) != getattr(self.render, render_key):
                raise ParamsError(
                    f"params keys 'model.{model_key}' ({getattr(self.model, model_key)}) and "
                    f"'render.{render_key}' ({getattr(self.render, render_key)}) must be equal: the model reads the rendered plots"
                )
        longest = max(self.data.length, self.data.heldout_length)
        if self.base.source == "tiny" and self.model.max_int < longest:
            raise ParamsError(
                f"params key 'model.max_int' ({self.model.max_int}) must be >= the longest series "
                f"(data.length / data.heldout_length = {longest}) so every index is one token"
            )
        return self


def load_params(path: str | Path = "params.yaml", validate: bool = True) -> Params:
    """Read and check a params file. Sections missing from the file take the dataclass defaults."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(
            f"no params file at {path}; create one with `anomseer params --profile tiny --out {path}`"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML ({exc}); fix it or regenerate it with `anomseer params`") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SECTION_TYPES) - {"profile"})
    if unknown:
        raise ParamsError(f"unknown params section '{unknown[0]}' in {path}; known: {', '.join(SECTION_TYPES)}")
    profile = raw.get("profile", "tiny")
    if profile not in PROFILES:
        raise ParamsError(f"params key 'profile' = {profile!r} must be one of {', '.join(PROFILES)}")
    params = Params(profile=profile, raw=raw, source=str(path))
    return params.validate_all() if validate else params
