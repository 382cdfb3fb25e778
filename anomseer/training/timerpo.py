"""TimerPO as TRL glue: GRPO plus an optimal-transport grounded advantage (method.md section 5).

`TimerPOTrainer` is TRL 1.16's `GRPOTrainer` with one hook overridden. Everything that is plain
GRPO (sampling G rollouts per prompt, PPO-clip, the k3 KL to the reference policy, the entropy
bonus, token-level loss aggregation, checkpointing, multi-process data layout) is TRL's; the
TimerPO maths is :mod:`anomseer.training.ot` and :mod:`anomseer.training.advantages`. This module
only connects them.

Design decisions
----------------
* **One hook for the maths.** `_generate_and_score_completions` calls ``super()`` (generation,
  rewards, TRL's advantages, reference log-probs) and then replaces ``advantages`` in the dict it
  returns with ``A = A_main + alpha * A_perp`` (one value per rollout: constant over its tokens,
  detached). Two small overrides serve it: `_calculate_rewards` (to keep the rewards) and
  `_get_train_sampler` (below). These are private TRL API, which is why the project pins
  ``trl==1.16``; ``tests/test_timerpo.py`` fails if their contract changes.
* **Groups may span processes.** TRL gathers every process's rewards before centring them per
  group, then keeps this process's slice. The rewards are captured from `_calculate_rewards`
  (already gathered); the similarities are computed locally and gathered the same way, so the
  TimerPO advantages see whole groups and every process computes the same numbers.
  ``scripts/check_multiprocess_advantages.py`` checks this with two CPU processes.
* **Hidden states cost one extra forward, without the LM head and without repeating the vision
  tower per rollout.** The response states come from a no-grad forward of the current policy's
  backbone over the very tensors TRL built for its log-prob pass (the returned ``prompt_ids``,
  ``completion_ids``, masks, ``pixel_values``, ``image_grid_thw``). The G rollouts of a prompt
  share one image, so the vision tower runs once per distinct image and its features are
  scattered into the token embeddings of every rollout (``share_image_features``). Reusing an
  earlier forward is not possible: TRL's own passes return log-probs only, and the reference
  model's states are not the current policy's.
* **The reference text (ExpCoT) is plain text.** No chat template, no special tokens, no image,
  truncated to ``reference_max_tokens``; explicit 1-D positions (the multimodal rotary cache of
  the previous call must not leak in). Each distinct reference is encoded once per batch.
* **The loss is TRL's.** ``loss_type="dapo"`` is the token-level mean: the summed per-token loss
  divided by the number of completion tokens of the whole generation batch (all processes and
  accumulation steps), so every token weighs the same (``bnpo`` would normalise per micro-batch).
  PPO-clip ``epsilon=0.2``; the k3 KL with ``beta=0.001`` is added per token before that mean;
  TRL 1.16 has the entropy bonus natively (``loss - entropy_coef * mean token entropy``), so no
  loss override is needed. ``use_bias_correction_kl=False``: the reference implementation's
  low-variance KL is not multiplied by the importance ratio.
* **Sampling never emits image placeholders** (`vision_token_ids`): a barely trained policy does
  sample ``<|vision_start|>``, and the next forward then fails inside the model's rotary index.
* **Resume keeps the data order.** TRL's `RepeatSampler` draws every epoch's permutation from one
  stateful generator, so a run resumed in epoch k > 0 would replay epoch 0's order. The sampler
  here reseeds with ``seed + epoch`` when the trainer announces an epoch (epoch 0 is TRL's order).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from trl import GRPOConfig, GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import RepeatSampler

from anomseer.rewards import RewardParams, reward_components
from anomseer.training.advantages import timerpo_advantages
from anomseer.training.ot import GroundingParams, grounded_similarity
from anomseer.training.timerpo_params import _REFERENCES, _SCALES, TimerPOParams

#: A fixed, content-free reasoning text for the "generic CoT" ablation: the same for every series,
#: it names the generic steps of an inspection but no statistic, position or anomaly type.
GENERIC_COT_TEMPLATE = (
    "Let me look at the plot step by step. First I scan the whole series from left to right and "
    "note its overall level and range. Then I check whether some values stand far apart from the "
    "rest. Next I check whether the overall direction of the series changes somewhere. Then I "
    "check whether the rhythm of the oscillation changes in some window. Then I look for a short "
    "stretch whose shape does not match the rest of the series. Finally I decide which of these "
    "observations is the most plausible anomaly and write down its intervals and its type."
)

#: Components of the outcome reward logged every step as ``outcome/<name>``.
OUTCOME_COMPONENTS = ("format", "class", "loc", "P", "R", "F1", "AffP", "AffR", "AffF1")

#: Added to the group std when advantage_scale="group": TRL's value, so that alpha=0 is exactly
#: TRL's GRPO advantage in both scale modes.
GROUP_STD_EPS = 1e-4


def generic_reference(sample: Any = None) -> str:
    """The reference text of the generic-CoT ablation: `GENERIC_COT_TEMPLATE`, whatever the series."""
    return GENERIC_COT_TEMPLATE


# --------------------------------------------------------------------------------------------
# Reward
# --------------------------------------------------------------------------------------------


def _completion_text(completion: Any) -> str:
    """TRL passes a string (plain prompts) or a list of messages (conversational prompts)."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def _intervals(value: Any) -> list:
    return json.loads(value) if isinstance(value, str) else list(value)


class OutcomeReward:
    """TRL reward function: the outcome reward of `anomseer.rewards` for each completion.

    Reads the dataset columns ``true_intervals`` (JSON string or list of pairs), ``true_label`` and
    ``length`` from TRL's keyword arguments, and logs the mean of every component
    (`OUTCOME_COMPONENTS`) for the step through TRL's ``log_metric``.
    """

    __name__ = "outcome"

    def __init__(self, params: RewardParams | None = None):
        self.params = (params or RewardParams()).validate()

    def __call__(self, completions, true_intervals, true_label, length, log_metric=None, **_) -> list[float]:
        totals, sums = [], dict.fromkeys(OUTCOME_COMPONENTS, 0.0)
        for completion, intervals, label, n in zip(completions, true_intervals, true_label, length, strict=True):
            parts = reward_components(_completion_text(completion), _intervals(intervals), label, int(n), self.params)
            totals.append(float(parts["total"]))
            for key in OUTCOME_COMPONENTS:
                sums[key] += float(parts[key])
        if log_metric is not None and totals:
            for key in OUTCOME_COMPONENTS:
                log_metric(f"outcome/{key}", sums[key] / len(totals))
        return totals


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass
class TimerPOConfig(GRPOConfig):
    r"""Configuration of `TimerPOTrainer`: every `GRPOConfig` field plus the TimerPO ones.

    > TimerPO (AnomSeer, arXiv 2602.08868, method.md section 5)

    alpha (`float`, defaults to `0.3`):
        Weight of the grounded advantage: ``A = A_main + alpha * A_perp``. ``0`` is vanilla GRPO
        (the similarity is still computed and logged, so ablations log the same metrics).
    project (`bool`, defaults to `True`):
        Remove from ``A_sem`` its per-group projection on ``A_main`` before mixing. ``False`` is
        the "no projection" ablation (``A_perp = A_sem``).
    advantage_scale (`str`, defaults to `"none"`):
        ``"none"``: ``A_main = r - mean_group(r)`` (the reference code); ``"group"``: also divided
        by the group std (the paper's wording). Mirrored into TRL's ``scale_rewards``.
    ot_eps, ot_iters, ot_tau (defaults `0.08`, `50`, `0.5`):
        Sinkhorn regularisation, iteration count, and the temperature of ``s = exp(-W / tau)``.
    reference_max_tokens (`int`, defaults to `512`):
        The reference text is truncated to this many tokens before encoding.
    reference_column (`str`, defaults to `"reference_text"`):
        Dataset column holding each prompt's reference text (the ExpCoT, or a generic CoT for the
        "generic CoT" ablation).
    share_image_features (`bool`, defaults to `True`):
        Run the vision tower once per distinct image in the hidden-state pass (speed only; the
        states equal those of a plain forward up to rounding).

    > Defaults changed from `GRPOConfig` to the reference recipe (method.md section 5, step 7)

    beta `0.001` (k3 KL as a loss), epsilon `0.2`, loss_type `"dapo"` (token-level mean over the
    generation batch), entropy_coef `0.001`, use_bias_correction_kl `False`, scale_rewards follows
    advantage_scale, logging_steps `1`, report_to `"none"`.
    """

    alpha: float = field(default=0.3, metadata={"help": "Weight of the grounded advantage (0 = vanilla GRPO)."})
    project: bool = field(default=True, metadata={"help": "Project A_sem orthogonally to A_main per group."})
    advantage_scale: str = field(
        default="none", metadata={"help": "'none': A_main = r - group mean; 'group': also / group std."}
    )
    ot_eps: float = field(default=0.08, metadata={"help": "Sinkhorn entropic regularisation."})
    ot_iters: int = field(default=50, metadata={"help": "Sinkhorn iterations (no early stop)."})
    ot_tau: float = field(default=0.5, metadata={"help": "Temperature of s = exp(-W / tau)."})
    reference_max_tokens: int = field(default=512, metadata={"help": "Truncate the reference text to this."})
    reference_column: str = field(default="reference_text", metadata={"help": "Column with the reference text."})
    share_image_features: bool = field(
        default=True, metadata={"help": "Vision tower once per distinct image in the hidden-state pass."}
    )
    # Reference recipe defaults (GRPOConfig has other defaults).
    beta: float = field(default=0.001, metadata={"help": "KL coefficient (k3 estimator)."})
    epsilon: float = field(default=0.2, metadata={"help": "PPO clip range."})
    loss_type: str = field(default="dapo", metadata={"help": "Token-level mean over the generation batch."})
    entropy_coef: float = field(default=0.001, metadata={"help": "Entropy bonus coefficient."})
    use_bias_correction_kl: bool = field(default=False, metadata={"help": "Multiply the KL by the IS ratio."})
    scale_rewards: str = field(default="none", metadata={"help": "Set from advantage_scale."})
    logging_steps: float = field(default=1, metadata={"help": "Log every optimizer step."})
    report_to: None | str | list[str] = field(default="none", metadata={"help": "Integrations to report to."})

    def __post_init__(self):
        if self.advantage_scale not in _SCALES:
            raise ValueError(f"advantage_scale must be one of {_SCALES}, got {self.advantage_scale!r}")
        self.scale_rewards = self.advantage_scale
        super().__post_init__()
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha!r}")
        if self.reference_max_tokens < 1:
            raise ValueError(f"reference_max_tokens must be >= 1, got {self.reference_max_tokens!r}")
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                "TimerPO centres the summed reward: multi_objective_aggregation must be 'sum_then_normalize'"
            )
        self.grounding.validate()

    @property
    def grounding(self) -> GroundingParams:
        return GroundingParams(eps=self.ot_eps, n_iter=self.ot_iters, tau=self.ot_tau)


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


class _EpochSeededRepeatSampler(RepeatSampler):
    """TRL's `RepeatSampler` whose permutation depends only on (seed, epoch), so resuming in a
    later epoch replays that epoch's order (accelerate forwards `set_epoch` to the sampler)."""

    def set_epoch(self, epoch: int) -> None:
        if self.shuffle:
            self.generator.manual_seed((self.seed or 0) + epoch)


def vision_token_ids(config) -> list[int]:
    """Ids of the multimodal placeholder tokens of a Qwen2-VL-style config.

    A completion must never contain them: a sampled ``<|vision_start|>`` makes the model's
    multimodal rotary index fail on the next forward (seen with a barely trained policy), and a
    sampled ``<|image_pad|>`` no longer matches the image features. TRL suppresses only the
    image token; the trainer suppresses all of these during sampling.
    """
    names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    return sorted({getattr(config, n) for n in names if isinstance(getattr(config, n, None), int)})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimerPOTrainer(GRPOTrainer):
    """GRPO with TimerPO's grounded advantage (method.md section 5); see the module docstring.

    Besides TRL's metrics it logs per step: ``outcome/<component>``, ``timerpo/a_main_mean|std``,
    ``timerpo/a_sem_mean|std``, ``timerpo/a_perp_std``, ``timerpo/advantage_std``,
    ``timerpo/beta_mean``, ``timerpo/ot_cost_mean``, ``timerpo/similarity_mean``,
    ``timerpo/frac_zero_var_groups`` and the seconds spent in the extra work
    (``timerpo/time_hidden_s``, ``timerpo/time_reference_s``, ``timerpo/time_ot_s``).
    After each generation, ``timerpo_last`` holds the tensors of the batch, on the CPU: gathered
    over processes (``rewards``, ``similarity``, ``ot_cost``, ``a_main``, ``a_sem``, ``a_perp``,
    ``beta``, ``advantages``) and this process's (``local_advantages``, the ones it trains on, and
    ``trl_advantages``, what TRL had computed); ``timerpo_batches`` appends the batch's ``uid``
    column (when the dataset has one), gathered, for provenance and the resume check.
    """

    def __init__(self, model, reward_funcs=None, args: TimerPOConfig | None = None, train_dataset=None, **kwargs):
        if not isinstance(args, TimerPOConfig):
            raise ValueError("TimerPOTrainer needs args=TimerPOConfig(...) (it holds alpha, the OT parameters, ...)")
        if train_dataset is not None and args.reference_column not in train_dataset.column_names:
            raise ValueError(
                f"the training dataset has no '{args.reference_column}' column: add each prompt's reference "
                f"text (ExpCoT, or generic_reference() for the ablation) or set reference_column"
            )
        if not args.use_vllm:  # vLLM sampling params have no suppress_tokens
            from transformers import AutoConfig

            config = model.config if hasattr(model, "config") else AutoConfig.from_pretrained(model)
            generation = dict(args.generation_kwargs or {})
            suppress = set(generation.get("suppress_tokens") or []) | set(vision_token_ids(config))
            generation["suppress_tokens"] = sorted(suppress)
            args.generation_kwargs = generation
        super().__init__(
            model=model,
            reward_funcs=reward_funcs if reward_funcs is not None else [OutcomeReward()],
            args=args,
            train_dataset=train_dataset,
            **kwargs,
        )
        self._captured_rewards: Tensor | None = None
        self.timerpo_last: dict[str, Any] = {}
        self.timerpo_batches: list[dict[str, Any]] = []

    # -- data order -------------------------------------------------------------------------

    def _get_train_sampler(self, dataset=None):
        base = super()._get_train_sampler(dataset)
        return _EpochSeededRepeatSampler(
            data_source=base.data_source,
            mini_repeat_count=base.mini_repeat_count,
            batch_size=base.batch_size,
            repeat_count=base.repeat_count,
            shuffle=base.shuffle,
            seed=base.seed,
        )

    # -- rewards ----------------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._captured_rewards = rewards_per_func  # (N_all, F), gathered over processes by TRL
        return rewards_per_func

    # -- hidden states ----------------------------------------------------------------------

    def _backbone(self):
        """The current policy without its LM head (unwrapped; LoRA adapters, if any, stay active)."""
        model = self.accelerator.unwrap_model(self.model)
        if hasattr(model, "get_base_model"):  # PEFT
            model = model.get_base_model()
        return model.base_model

    def _chunk_size(self, n_rows: int) -> int:
        size = self.args.per_device_train_batch_size if self.model.training else self.args.per_device_eval_batch_size
        return max(1, min(size, n_rows))

    def _distinct_image_features(self, backbone, pixel_values: Tensor, grid: Tensor) -> list[Tensor]:
        """Vision features of every image in the batch, computing each distinct image once.

        Returns one ``(tokens_j, d)`` tensor per image, in order.
        """
        rows = grid.prod(-1).tolist()
        bounds = [0]
        for n in rows:
            bounds.append(bounds[-1] + n)
        unique_of: list[int] = []
        uniques: list[int] = []  # image index of each distinct image
        by_key: dict[tuple, list[int]] = {}
        def image(j: int) -> Tensor:
            return pixel_values[bounds[j] : bounds[j + 1]]

        for j in range(len(rows)):
            pix = image(j)
            # A cheap fingerprint narrows the candidates; torch.equal decides.
            key = (tuple(grid[j].tolist()), float(pix.sum()), float(pix[::7].abs().sum()))
            match = next((u for u in by_key.get(key, []) if torch.equal(pix, image(uniques[u]))), None)
            if match is None:
                match = len(uniques)
                uniques.append(j)
                by_key.setdefault(key, []).append(match)
            unique_of.append(match)
        pix_unique = torch.cat([image(j) for j in uniques])
        grid_unique = grid[uniques]
        with self.accelerator.autocast():
            feats = backbone.get_image_features(pix_unique, grid_unique, return_dict=True).pooler_output
        return [feats[u] for u in unique_of]

    @torch.no_grad()
    def _response_hidden_states(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Last-layer hidden states of each rollout's response tokens, from the current policy.

        Forward over image + prompt + response, built from the tensors TRL returned for its
        log-prob pass. Returns ``(h (B, C, d), mask (B, C) bool)`` with C the padded completion
        length; the state at a response position is that of the response token itself.
        """
        prompt_ids, completion_ids = batch["prompt_ids"], batch["completion_ids"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        mask = batch["completion_mask"] if "tool_mask" not in batch else batch["completion_mask"] * batch["tool_mask"]
        n_completion = completion_ids.size(1)
        backbone = self._backbone()
        pixel_values, grid = batch.get("pixel_values"), batch.get("image_grid_thw")
        if pixel_values is not None and grid is None:
            raise ValueError("TimerPO supports Qwen2-VL-style models (pixel_values with image_grid_thw) only")
        per_image_rows, features = None, None
        if pixel_values is not None:
            image_cum = [0]
            for n in batch["num_images"]:
                image_cum.append(image_cum[-1] + n)
            per_image_rows = [0]
            for n in grid.prod(-1).tolist():
                per_image_rows.append(per_image_rows[-1] + n)
            if self.args.share_image_features:
                features = self._distinct_image_features(backbone, pixel_values, grid)
        image_token_id = backbone.config.image_token_id
        states = []
        size = self._chunk_size(input_ids.size(0))
        for start in range(0, input_ids.size(0), size):
            end = min(start + size, input_ids.size(0))
            ids = input_ids[start:end]
            kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": attention_mask[start:end], "use_cache": False}
            if pixel_values is not None:
                i0, i1 = image_cum[start], image_cum[end]
                kwargs["image_grid_thw"] = grid[i0:i1]
                if features is not None:
                    embeds = backbone.get_input_embeddings()(ids)
                    if i1 > i0:
                        image_embeds = torch.cat(features[i0:i1]).to(embeds.device, embeds.dtype)
                        slot = (ids == image_token_id).unsqueeze(-1).expand_as(embeds)
                        embeds = embeds.masked_scatter(slot, image_embeds)
                    # input_ids still go in: the model derives its multimodal rotary positions from them.
                    kwargs["inputs_embeds"] = embeds
                else:
                    kwargs["pixel_values"] = pixel_values[per_image_rows[i0] : per_image_rows[i1]]
            with self.accelerator.autocast():
                states.append(backbone(**kwargs).last_hidden_state[:, -n_completion:])
        return torch.cat(states), mask.bool()

    def _tokenize_references(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Token ids of each text alone (no template, no special tokens), truncated, right-padded.

        Returns ``(ids (U, m) long, mask (U, m) bool)``; a text without tokens has an empty mask row.
        """
        limit = self.args.reference_max_tokens
        encoded = [self._tokenizer(text, add_special_tokens=False)["input_ids"][:limit] for text in texts]
        width = max(1, max(len(ids) for ids in encoded))
        pad = self._tokenizer.pad_token_id
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.bool)
        for row, seq in enumerate(encoded):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = True
        device = self.accelerator.device
        return ids.to(device), mask.to(device)

    @torch.no_grad()
    def _reference_hidden_states(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Last-layer states of each reference text encoded alone by the current policy (text only).

        Returns ``(h (U, m, d), mask (U, m) bool)``.
        """
        ids, mask = self._tokenize_references(texts)
        backbone = self._backbone()
        # Explicit 1-D positions: without them the model would reuse the multimodal rotary offsets
        # cached by the previous image forward.
        positions = torch.arange(ids.size(1), device=ids.device).expand_as(ids)
        states = []
        size = self._chunk_size(ids.size(0))
        for start in range(0, ids.size(0), size):
            end = start + size
            with self.accelerator.autocast():
                out = backbone(
                    input_ids=ids[start:end],
                    attention_mask=mask[start:end].long(),
                    position_ids=positions[start:end],
                    use_cache=False,
                )
            states.append(out.last_hidden_state)
        return torch.cat(states), mask

    @torch.no_grad()
    def _local_similarity(self, inputs: list[dict], batch: dict[str, Any]) -> tuple[Tensor, Tensor, dict[str, float]]:
        """Grounded similarity and OT cost of this process's rollouts, shape (B_local,) each."""
        device = self.accelerator.device
        _sync(device)
        t0 = time.perf_counter()
        # As in TRL's own no-grad passes: checkpointing only costs time without a backward.
        with disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            h_resp, resp_mask = self._response_hidden_states(batch)
            _sync(device)
            t1 = time.perf_counter()
            texts = [str(x[self.args.reference_column]) for x in inputs]
            distinct = list(dict.fromkeys(texts))
            h_ref, ref_mask = self._reference_hidden_states(distinct)
        index = torch.tensor([distinct.index(t) for t in texts], device=h_ref.device)
        _sync(device)
        t2 = time.perf_counter()
        sims, costs = [], []
        size = self._chunk_size(h_resp.size(0))
        for start in range(0, h_resp.size(0), size):
            rows = index[start : start + size]
            s, w = grounded_similarity(
                h_resp[start : start + size], resp_mask[start : start + size], h_ref[rows], ref_mask[rows],
                self.args.grounding,
            )
            sims.append(s)
            costs.append(w)
        _sync(device)
        t3 = time.perf_counter()
        timings = {"hidden": t1 - t0, "reference": t2 - t1, "ot": t3 - t2}
        return torch.cat(sims).float(), torch.cat(costs).float(), timings

    # -- the hook ---------------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        group = self.num_generations if mode == "train" else self.num_generations_eval
        device = self.accelerator.device

        rewards_per_func = self._captured_rewards
        rewards = (rewards_per_func * self.reward_weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
        unscorable = torch.isnan(rewards_per_func).all(dim=1)
        if unscorable.any():
            # Like TRL: an unscorable rollout leaves its group's baseline alone and gets advantage 0.
            grouped = rewards.masked_fill(unscorable, float("nan")).view(-1, group)
            fill = torch.nanmean(grouped, dim=1, keepdim=True).nan_to_num(0.0).expand_as(grouped).reshape(-1)
            rewards = torch.where(unscorable, fill, rewards)

        sim_local, cost_local, timings = self._local_similarity(inputs, output)
        similarity = self.accelerator.gather(sim_local.to(device))
        cost = self.accelerator.gather(cost_local.to(device))

        _sync(device)
        t0 = time.perf_counter()
        result = timerpo_advantages(
            rewards.float(), similarity, group, alpha=self.args.alpha, project=self.args.project,
            scale=self.args.advantage_scale, eps=GROUP_STD_EPS,
        )
        advantages = result.advantages.masked_fill(unscorable.to(result.advantages.device), 0.0)
        timings["ot"] += time.perf_counter() - t0

        rank = self.accelerator.process_index
        local = advantages[rank * len(inputs) : (rank + 1) * len(inputs)]
        trl_advantages = output["advantages"]
        output["advantages"] = local.detach().to(device=output["advantages"].device, dtype=output["advantages"].dtype)

        self._log_timerpo(mode, rewards, group, result, similarity, cost, advantages, timings)
        self.timerpo_last = {
            "rewards": rewards.detach().cpu(),
            "similarity": similarity.detach().cpu(),
            "ot_cost": cost.detach().cpu(),
            "a_main": result.a_main.detach().cpu(),
            "a_sem": result.a_sem.detach().cpu(),
            "a_perp": result.a_perp.detach().cpu(),
            "beta": result.beta.detach().cpu(),
            "advantages": advantages.detach().cpu(),
            "local_advantages": local.detach().cpu(),
            "trl_advantages": trl_advantages.detach().cpu(),
            "group_size": group,
        }
        if mode == "train" and "uid" in inputs[0]:
            from accelerate.utils import gather_object

            self.timerpo_batches.append(
                {"step": self.state.global_step, "uids": gather_object([x["uid"] for x in inputs])}
            )
        return output

    def _log_timerpo(self, mode, rewards, group, result, similarity, cost, advantages, timings) -> None:
        metrics = self._metrics[mode]
        grouped = rewards.view(-1, group)
        zero_var = (grouped.max(dim=1).values - grouped.min(dim=1).values) <= 1e-12
        values = {
            "timerpo/a_main_mean": result.a_main.mean(),
            "timerpo/a_main_std": result.a_main.std(unbiased=False),
            "timerpo/a_sem_mean": result.a_sem.mean(),
            "timerpo/a_sem_std": result.a_sem.std(unbiased=False),
            "timerpo/a_perp_std": result.a_perp.std(unbiased=False),
            "timerpo/advantage_std": advantages.std(unbiased=False),
            "timerpo/beta_mean": result.beta.float().mean(),
            "timerpo/ot_cost_mean": cost.mean(),
            "timerpo/similarity_mean": similarity.mean(),
            "timerpo/frac_zero_var_groups": zero_var.float().mean(),
        }
        for name, value in values.items():
            metrics[name].append(float(value))
        # Seconds of the slowest process: that is what the step waits for.
        spent = torch.tensor(
            [timings["hidden"], timings["reference"], timings["ot"]], device=self.accelerator.device
        )
        spent = self.accelerator.gather(spent).view(-1, 3).max(dim=0).values.tolist()
        metrics["timerpo/time_hidden_s"].append(spent[0])
        metrics["timerpo/time_reference_s"].append(spent[1])
        metrics["timerpo/time_ot_s"].append(spent[2])


# --------------------------------------------------------------------------------------------
# Stage function
# --------------------------------------------------------------------------------------------


_ROW_KEYS = ("image", "true_intervals", "true_label", "length")


def _prompt_messages(row: dict) -> list[dict]:
    """A single user turn with string content; TRL inserts the image placeholder in front."""
    if "messages" in row:
        turns = []
        for message in row["messages"]:
            content = message["content"]
            if not isinstance(content, str):
                content = "".join(part.get("text", "") for part in content if part.get("type") == "text")
            turns.append({"role": message["role"], "content": content})
        return turns
    if not isinstance(row.get("prompt"), str):
        raise ValueError("each row needs a 'prompt' string (anomseer.task.build_prompt) or 'messages'")
    return [{"role": "user", "content": row["prompt"]}]


def build_dataset(rows: Sequence[dict], params: TimerPOParams):
    """TRL dataset of conversational prompts with their image, truth and reference text."""
    from datasets import Dataset, Image

    if not rows:
        raise ValueError("no training rows: TimerPO needs at least prompts_per_step rows")
    records = []
    for i, row in enumerate(rows):
        missing = [key for key in _ROW_KEYS if key not in row]
        if params.reference == "expcot" and "reference_text" not in row:
            missing.append("reference_text")
        if missing:
            raise ValueError(f"row {i} lacks {missing}; rows come from anomseer.datasets.training_rows")
        image = Path(row["image"])
        if not image.is_file():
            raise FileNotFoundError(f"row {i}: image {image} does not exist; run the rendering stage first")
        intervals = row["true_intervals"]
        records.append(
            {
                "uid": str(row.get("uid", i)),
                "prompt": _prompt_messages(row),
                "image": str(image),
                "true_intervals": intervals if isinstance(intervals, str) else json.dumps([list(p) for p in intervals]),
                "true_label": str(row["true_label"]),
                "length": int(row["length"]),
                "reference_text": (
                    generic_reference(row) if params.reference == "generic" else str(row["reference_text"])
                ),
            }
        )
    return Dataset.from_list(records).cast_column("image", Image())


def _world_size() -> int:
    # The launcher's variable, read without initialising torch.distributed (the trainer does that).
    return int(os.environ.get("WORLD_SIZE", "1"))


def make_config(params: TimerPOParams, output_dir: str | Path, n_rows: int) -> TimerPOConfig:
    """Map `TimerPOParams` onto `TimerPOConfig` (one optimizer step per rollout batch)."""
    params.validate()
    if params.prompts_per_step > n_rows:
        raise ValueError(
            f"prompts_per_step ({params.prompts_per_step}) exceeds the {n_rows} training rows; lower it"
        )
    world = _world_size()
    rollouts = params.prompts_per_step * params.num_generations
    if rollouts % world:
        raise ValueError(f"prompts_per_step * num_generations ({rollouts}) must divide by the {world} processes")
    share = rollouts // world
    micro = params.micro_batch_rollouts or share
    if share % micro:
        raise ValueError(
            f"micro_batch_rollouts ({micro}) must divide the per-process rollouts per step ({share})"
        )
    cuda = torch.cuda.is_available()
    return TimerPOConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=share // micro,
        num_generations=params.num_generations,
        max_completion_length=params.max_completion_length,
        temperature=params.temperature,
        learning_rate=params.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=params.weight_decay,
        max_grad_norm=params.max_grad_norm,
        num_train_epochs=params.epochs,
        max_steps=params.max_steps,
        beta=params.beta,
        epsilon=params.epsilon,
        entropy_coef=params.entropy_coef,
        alpha=params.alpha,
        project=params.project,
        advantage_scale=params.advantage_scale,
        ot_eps=params.ot_eps,
        ot_iters=params.ot_iters,
        ot_tau=params.ot_tau,
        reference_max_tokens=params.reference_max_tokens,
        seed=params.seed,
        data_seed=params.seed,
        save_strategy="steps",
        save_steps=params.save_steps,
        save_total_limit=params.save_total_limit,
        use_vllm=params.use_vllm,
        use_cpu=not cuda,
        bf16=params.bf16 and cuda,
        gradient_checkpointing=params.gradient_checkpointing,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def run_timerpo(
    model_dir: str | Path,
    rows: Sequence[dict],
    out_dir: str | Path,
    params: TimerPOParams | None = None,
    resume: bool = True,
    callbacks: list | None = None,
    reward_params: RewardParams | None = None,
) -> dict:
    """Train a policy with TimerPO from ``model_dir`` (normally the SFT checkpoint).

    ``rows``: dicts with ``image`` (PNG path), ``prompt`` (text) or ``messages``,
    ``true_intervals`` (JSON string or pairs), ``true_label``, ``length``, ``reference_text``
    and optionally ``uid`` (see `anomseer.datasets.training_rows`). The reference policy of the KL
    term is ``model_dir`` itself. Checkpoints go to ``out_dir/checkpoints``; with ``resume`` the
    last one is continued (same data order). The final model and processor are saved in
    ``out_dir``.

    Returns a summary: ``log_history`` (TRL's per-step logs), ``batches`` (uids per step of this
    session), ``wall_seconds``, ``global_step``, ``reward_start`` / ``reward_end`` (mean reward
    of the first / last 10% of logged steps), ``resumed_from`` and ``model_dir``.
    """
    from transformers.trainer_utils import get_last_checkpoint

    from anomseer.modeling.loading import load_model_and_processor

    params = (params or TimerPOParams()).validate()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"no model folder at {model_dir}; run the SFT stage first")
    checkpoints = out_dir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    dataset = build_dataset(rows, params)
    config = make_config(params, checkpoints, len(dataset))
    model, processor = load_model_and_processor(model_dir)
    trainer = TimerPOTrainer(
        model=model,
        reward_funcs=[OutcomeReward(reward_params)],
        args=config,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=callbacks,
    )
    last = get_last_checkpoint(str(checkpoints)) if resume else None
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=last)
    wall = time.perf_counter() - start
    trainer.save_model(str(out_dir))
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(str(out_dir))
    history = list(trainer.state.log_history)
    rewards = [entry["reward"] for entry in history if "reward" in entry]
    k = max(1, len(rewards) // 10)
    return {
        "log_history": history,
        "batches": trainer.timerpo_batches,
        "wall_seconds": wall,
        "global_step": trainer.state.global_step,
        "reward_start": sum(rewards[:k]) / k if rewards else float("nan"),
        "reward_end": sum(rewards[-k:]) / k if rewards else float("nan"),
        "resumed_from": last,
        "model_dir": str(out_dir),
        "params": dataclasses.asdict(params),
    }


__all__ = [
    "GENERIC_COT_TEMPLATE",
    "OUTCOME_COMPONENTS",
    "OutcomeReward",
    "TimerPOConfig",
    "TimerPOParams",
    "TimerPOTrainer",
    "build_dataset",
    "generic_reference",
    "make_config",
    "run_timerpo",
    "vision_token_ids",
]
