"""TimerPO trainer glue: the advantages TRL trains on, the hidden states behind them, resume.

A micro Qwen2.5-VL (built locally in a second) trains for single steps. Completions are scripted
(a fixed function of the rollout's position in the batch) where a test needs rewards that differ
inside a group: a randomly initialised model would score 0 everywhere and make every advantage
check trivially true. The resume test samples for real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from anomseer.modeling.loading import load_model_and_processor
from anomseer.modeling.tiny import TinyModelParams, build_tiny_model
from anomseer.render import RenderParams, render_png
from anomseer.rewards import reward_components
from anomseer.series import generate
from anomseer.task import build_prompt
from anomseer.training.advantages import timerpo_advantages
from anomseer.training.ot import GroundingParams, grounded_similarity
from anomseer.training.timerpo import (
    GENERIC_COT_TEMPLATE,
    OUTCOME_COMPONENTS,
    OutcomeReward,
    TimerPOConfig,
    TimerPOParams,
    TimerPOTrainer,
    build_dataset,
    make_config,
    run_timerpo,
)

REPO = Path(__file__).resolve().parents[1]
LENGTH = 250  # the shortest series the AnomLLM families accept
GROUP = 4
MICRO = TinyModelParams(
    text_hidden_size=64, text_layers=2, text_heads=2, text_kv_heads=1, text_intermediate_size=128,
    mrope_section=(4, 6, 6), max_position_embeddings=1024, vision_depth=2, vision_hidden_size=32,
    vision_heads=2, vision_intermediate_size=64, fullatt_block_indexes=(1,), window_size=56,
    image_width=224, image_height=56, vocab_size=700, max_int=LENGTH,
)
SCRIPTED = (
    "<think>The series is flat except for a jump near 40.</think><answer>[[40, 52]]</answer><class>global point</class>",
    "<think>No value stands out.</think><answer>[]</answer><class>normal</class>",
    "<think>A spike.</think><answer>[[10, 20]]</answer><class>contextual point</class>",
    "<answer>[[0, 250]]</answer>",
    "<think>The level shifts upward around 60 and stays there.</think><answer>[[58, 70]]</answer><class>global point</class>",
)


def scripted_text(global_row: int) -> str:
    return SCRIPTED[(7 * global_row + 3) % len(SCRIPTED)]


class ScriptedGeneration:
    """Mixin: rollout ``g`` of the batch (process-major order) completes with ``scripted_text(g)``."""

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        offset = self.accelerator.process_index * len(prompt_ids)
        eos = self._tokenizer.eos_token_id
        return [
            self._tokenizer(scripted_text(offset + r), add_special_tokens=False)["input_ids"] + [eos]
            for r in range(len(prompt_ids))
        ], None


class Capture:
    """Mixin: keep the batch TRL builds, and the advantages each loss micro-batch receives."""

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        self.captured_inputs = inputs
        self.captured_output = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in output.items()}
        self.on_batch(output)  # hook for tests that need the weights of this very step
        return output

    def on_batch(self, output):
        pass

    def _compute_loss(self, model, inputs):
        self.loss_advantages = getattr(self, "loss_advantages", []) + [inputs["advantages"].detach().clone()]
        return super()._compute_loss(model, inputs)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Two threads on two shared cores are an order of magnitude slower than one when other
    # processes compete for them (measured: 22 ms vs 1.7 ms for a small matmul).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> tuple[Path, list[dict]]:
    folder = tmp_path_factory.mktemp("timerpo")
    rows = []
    for i, sample in enumerate(generate("range", 4, seed=11, length=LENGTH)):
        image = folder / f"s{i}.png"
        render_png(sample.values, image, RenderParams(width_px=224, height_px=56))
        rows.append(
            {
                "uid": f"range-{i}",
                "image": str(image),
                "prompt": build_prompt(LENGTH),
                "true_intervals": json.dumps([list(p) for p in sample.intervals]),
                "true_label": sample.label,
                "length": LENGTH,
                # Distinct per row and of different lengths, like real ExpCoT traces.
                "reference_text": " ".join(["Observation: a value stands far from the rest."] * (i + 1)),
            }
        )
    corpus = [build_prompt(LENGTH), *SCRIPTED, *(r["reference_text"] for r in rows)]
    build_tiny_model(folder / "model", corpus, MICRO)
    return folder, rows


def make_trainer(cls, work, params: TimerPOParams, out: str, **overrides):
    folder, rows = work
    dataset = build_dataset(rows, params)
    config = make_config(params, folder / out, len(dataset))
    config.save_strategy = "no"
    for key, value in overrides.items():
        setattr(config, key, value)
    model, processor = load_model_and_processor(folder / "model")
    return cls(model=model, args=config, train_dataset=dataset, processing_class=processor)


def plain_response_states(model, output) -> torch.Tensor:
    """Response-token states from an ordinary forward: every rollout runs its own vision tower."""
    ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
    mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
    out = model.model(
        input_ids=ids, attention_mask=mask, pixel_values=output["pixel_values"], image_grid_thw=output["image_grid_thw"]
    )
    return out.last_hidden_state[:, -output["completion_ids"].size(1) :]


def test_one_step_trains_on_timerpo_advantages_and_logs_them(work):
    class Trainer(Capture, ScriptedGeneration, TimerPOTrainer):
        def on_batch(self, output):
            with torch.no_grad():
                self.plain_states = plain_response_states(self.model, output)
                self.shared_states, self.resp_mask = self._response_hidden_states(output)
                self.args.share_image_features = False
                self.unshared_states, _ = self._response_hidden_states(output)
                self.args.share_image_features = True
                texts = [x["reference_text"] for x in self.captured_inputs]
                distinct = list(dict.fromkeys(texts))
                ids, ref_mask = self._tokenize_references(distinct)
                # Independent reference states: the language model alone, one text at a time.
                self.ref_states = [
                    self.model.model.language_model(input_ids=ids[i : i + 1, : int(ref_mask[i].sum())]).last_hidden_state[0]
                    for i in range(len(distinct))
                ]
                self.ref_index = [distinct.index(t) for t in texts]

    params = TimerPOParams(max_steps=1, prompts_per_step=2, num_generations=GROUP, micro_batch_rollouts=4, alpha=0.5)
    trainer = make_trainer(Trainer, work, params, "one_step")
    text_rows = []
    backbone = trainer.model.model
    handle = backbone.register_forward_pre_hook(
        lambda module, args, kwargs: text_rows.append(kwargs["input_ids"].size(0)) if "image_grid_thw" not in kwargs else None,
        with_kwargs=True,
    )
    trainer.train()
    handle.remove()
    last, out, inputs = trainer.timerpo_last, trainer.captured_output, trainer.captured_inputs
    n = len(inputs)
    assert n == 2 * GROUP

    # Rewards: the outcome reward of each scripted completion against its own row's truth.
    expected = [
        reward_components(scripted_text(g), json.loads(x["true_intervals"]), x["true_label"], x["length"])
        for g, x in enumerate(inputs)
    ]
    assert last["rewards"].tolist() == pytest.approx([e["total"] for e in expected], abs=1e-6)
    assert len(set(last["rewards"].tolist())) > 2  # the check above is not about constants

    # Hidden states: sharing the vision features across a group changes nothing; the OT inputs
    # are the last-layer states of the response tokens.
    assert torch.allclose(trainer.shared_states, trainer.plain_states, atol=1e-5)
    assert torch.allclose(trainer.unshared_states, trainer.plain_states, atol=1e-5)
    lengths = [len(trainer._tokenizer(scripted_text(g), add_special_tokens=False)["input_ids"]) + 1 for g in range(n)]
    assert trainer.resp_mask.sum(1).tolist() == lengths  # the response tokens and the eos, no padding

    # Similarity recomputed from the independent states (rollout by rollout).
    grounding = GroundingParams(eps=0.08, n_iter=50, tau=0.5)
    for i in range(n):
        keep = trainer.resp_mask[i]
        ref = trainer.ref_states[trainer.ref_index[i]]
        s, w = grounded_similarity(
            trainer.plain_states[i : i + 1, keep], torch.ones(1, int(keep.sum()), dtype=torch.bool),
            ref[None], torch.ones(1, ref.size(0), dtype=torch.bool), grounding,
        )
        assert float(s) == pytest.approx(float(last["similarity"][i]), abs=1e-5)
        assert float(w) == pytest.approx(float(last["ot_cost"][i]), abs=1e-5)
    # Two distinct references in the batch, each encoded once, text only.
    assert text_rows == [2]

    # The advantages: TimerPO's formula on the captured rewards and similarities, replacing TRL's,
    # and exactly what the two loss micro-batches received (TRL shuffles the rows first).
    recomputed = timerpo_advantages(last["rewards"], last["similarity"], GROUP, alpha=0.5, project=True, scale="none")
    assert torch.allclose(last["advantages"], recomputed.advantages, atol=1e-7)
    assert torch.allclose(out["advantages"], recomputed.advantages, atol=1e-7)
    assert not torch.allclose(out["advantages"], last["trl_advantages"], atol=1e-4)  # alpha 0.5 matters
    assert torch.allclose(last["trl_advantages"], recomputed.a_main, atol=1e-7)  # TRL's = A_main
    seen = torch.cat(trainer.loss_advantages)
    assert [t.numel() for t in trainer.loss_advantages] == [4, 4]
    assert torch.allclose(seen.sort().values, out["advantages"].sort().values, atol=1e-7)

    # Per-step logs.
    log = trainer.state.log_history[0]
    for key in OUTCOME_COMPONENTS:
        mean = sum(e[key] for e in expected) / n
        assert log[f"outcome/{key}"] == pytest.approx(mean, abs=1e-6)
    for key in ("a_main_mean", "a_main_std", "a_sem_mean", "a_sem_std", "beta_mean", "ot_cost_mean",
                "similarity_mean", "frac_zero_var_groups", "time_hidden_s", "time_reference_s", "time_ot_s"):
        assert f"timerpo/{key}" in log
    assert log["timerpo/ot_cost_mean"] == pytest.approx(float(last["ot_cost"].mean()), abs=1e-6)
    assert log["timerpo/a_sem_std"] == pytest.approx(float(recomputed.a_sem.std(unbiased=False)), abs=1e-6)
    for key in ("kl", "entropy", "completions/mean_length", "reward"):
        assert key in log


@pytest.mark.parametrize("scale", ["none", "group"])
def test_alpha_zero_gives_plain_grpo_advantages(work, scale):
    from trl import GRPOConfig, GRPOTrainer

    class Timer(Capture, ScriptedGeneration, TimerPOTrainer):
        pass

    class Plain(Capture, ScriptedGeneration, GRPOTrainer):
        pass

    params = TimerPOParams(max_steps=1, prompts_per_step=2, num_generations=GROUP, alpha=0.0, advantage_scale=scale)
    timer = make_trainer(Timer, work, params, f"alpha0_{scale}")
    timer.train()

    folder, rows = work
    dataset = build_dataset(rows, params)
    config = GRPOConfig(
        output_dir=str(folder / f"plain_{scale}"), per_device_train_batch_size=2 * GROUP, num_generations=GROUP,
        max_completion_length=params.max_completion_length, learning_rate=params.learning_rate, beta=0.001,
        loss_type="dapo", scale_rewards=scale, entropy_coef=0.001, use_bias_correction_kl=False, max_steps=1,
        seed=params.seed, use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none",
        save_strategy="no", disable_tqdm=True,
    )
    model, processor = load_model_and_processor(folder / "model")
    plain = Plain(model=model, reward_funcs=[OutcomeReward()], args=config, train_dataset=dataset, processing_class=processor)
    plain.train()

    assert [x["uid"] for x in timer.captured_inputs] == [x["uid"] for x in plain.captured_inputs]
    rewards = timer.timerpo_last["rewards"].view(-1, GROUP)
    assert (rewards.max(1).values > rewards.min(1).values).all()  # non-degenerate groups
    assert torch.allclose(timer.captured_output["advantages"], plain.captured_output["advantages"], atol=1e-6)


def test_reference_encoding_is_text_only_and_truncated(work):
    params = TimerPOParams(max_steps=1, prompts_per_step=2, num_generations=GROUP, reference_max_tokens=24)
    trainer = make_trainer(TimerPOTrainer, work, params, "reference")
    long_text = "Reasoning: the gradient stays flat, then the values jump far above the rest. " * 20
    short_text = "A spike."
    calls = []
    backbone = trainer.model.model
    handle = backbone.register_forward_pre_hook(lambda m, a, kw: calls.append(kw), with_kwargs=True)
    backbone.rope_deltas = torch.tensor([[37]])  # a stale multimodal offset must not leak in
    states, mask = trainer._reference_hidden_states([long_text, short_text])
    handle.remove()

    tokenizer = trainer._tokenizer
    full = tokenizer(long_text, add_special_tokens=False)["input_ids"]
    short = tokenizer(short_text, add_special_tokens=False)["input_ids"]
    assert len(full) > 24
    assert mask.sum(1).tolist() == [24, len(short)]
    ids = calls[0]["input_ids"]
    assert ids[0].tolist() == full[:24] and ids[1, : len(short)].tolist() == short
    assert all("pixel_values" not in kw and "image_grid_thw" not in kw for kw in calls)
    special = set(tokenizer.all_special_ids) | {backbone.config.image_token_id, backbone.config.vision_start_token_id}
    assert not special & set(ids[mask].tolist())
    # Sampling never emits image placeholders (a sampled <|vision_start|> breaks the next forward).
    assert {backbone.config.vision_start_token_id, backbone.config.image_token_id} <= set(
        trainer.generation_config.suppress_tokens
    )

    fresh, _ = load_model_and_processor(work[0] / "model")
    with torch.no_grad():
        expected = fresh.model.language_model(input_ids=torch.tensor([full[:24]])).last_hidden_state[0]
        expected_short = fresh.model.language_model(input_ids=torch.tensor([short])).last_hidden_state[0]
    assert torch.allclose(states[0], expected, atol=1e-5)
    assert torch.allclose(states[1, : len(short)], expected_short, atol=1e-5)


def test_resume_continues_with_the_same_data_order(work, tmp_path):
    folder, rows = work
    # 4 rows, 2 prompts per step: epoch 0 is steps 1-2, epoch 1 is steps 3-4.
    params = TimerPOParams(
        max_steps=4, prompts_per_step=2, num_generations=2, max_completion_length=12, save_steps=1,
        save_total_limit=4, temperature=1.0,
    )
    straight = run_timerpo(folder / "model", rows, tmp_path / "straight", params, resume=False)
    assert [b["step"] for b in straight["batches"]] == [0, 1, 2, 3]
    epochs = [sorted(set(b["uids"])) for b in straight["batches"]]
    assert sorted(epochs[0] + epochs[1]) == sorted(epochs[2] + epochs[3]) == sorted(r["uid"] for r in rows)
    assert (tmp_path / "straight" / "config.json").is_file()
    assert (tmp_path / "straight" / "processor_config.json").is_file()

    losses = {e["step"]: e for e in straight["log_history"] if "loss" in e}
    # Resume at an epoch boundary (after step 2) and inside an epoch (after step 3).
    for done in (2, 3):
        out = tmp_path / f"resumed_{done}"
        (out / "checkpoints").mkdir(parents=True)
        shutil.copytree(tmp_path / "straight" / "checkpoints" / f"checkpoint-{done}", out / "checkpoints" / f"checkpoint-{done}")
        resumed = run_timerpo(folder / "model", rows, out, params, resume=True)
        assert resumed["resumed_from"].endswith(f"checkpoint-{done}")
        assert resumed["global_step"] == 4
        assert resumed["batches"] == straight["batches"][done:]
        for entry in resumed["log_history"]:
            if "loss" in entry:
                assert entry["reward"] == pytest.approx(losses[entry["step"]]["reward"], abs=1e-6)
                assert entry["loss"] == pytest.approx(losses[entry["step"]]["loss"], abs=1e-5)


def test_params_config_and_dataset_mapping(work, tmp_path):
    folder, rows = work
    with pytest.raises(ValueError, match="num_generations"):
        TimerPOParams(num_generations=1).validate()
    with pytest.raises(ValueError, match="advantage_scale"):
        TimerPOParams(advantage_scale="batch").validate()
    with pytest.raises(ValueError, match="reference"):
        TimerPOParams(reference="none").validate()

    params = TimerPOParams(prompts_per_step=2, num_generations=4, micro_batch_rollouts=2, alpha=0.0, project=False)
    config = make_config(params, tmp_path, n_rows=4)
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (2, 4)
    assert config.generation_batch_size == 8  # one optimizer step per rollout batch
    assert (config.alpha, config.project, config.scale_rewards, config.loss_type) == (0.0, False, "none", "dapo")
    assert (config.beta, config.epsilon, config.entropy_coef) == (0.001, 0.2, 0.001)
    if not torch.cuda.is_available():
        assert config.use_cpu and not config.bf16
    with pytest.raises(ValueError, match="micro_batch_rollouts"):
        make_config(TimerPOParams(prompts_per_step=2, num_generations=4, micro_batch_rollouts=3), tmp_path, 4)
    with pytest.raises(ValueError, match="prompts_per_step"):
        make_config(TimerPOParams(prompts_per_step=8), tmp_path, 4)
    with pytest.raises(ValueError, match="advantage_scale"):
        TimerPOConfig(output_dir=str(tmp_path), advantage_scale="batch")

    generic = build_dataset(rows, TimerPOParams(reference="generic"))
    assert set(generic["reference_text"]) == {GENERIC_COT_TEMPLATE}
    expcot = build_dataset(rows, TimerPOParams())
    assert expcot["reference_text"] == [r["reference_text"] for r in rows]
    assert expcot[0]["prompt"] == [{"role": "user", "content": build_prompt(LENGTH)}]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_dataset([{**rows[0], "image": str(tmp_path / "missing.png")}], TimerPOParams())
    with pytest.raises(ValueError, match="reference_text"):
        build_dataset([{k: v for k, v in rows[0].items() if k != "reference_text"}], TimerPOParams())


@pytest.mark.slow
def test_groups_split_across_two_processes_give_the_single_process_advantages(tmp_path):
    """Two CPU processes (torchrun via accelerate) vs one, on the same scripted batch."""
    script = REPO / "scripts" / "check_multiprocess_advantages.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    # The single-process run also builds the micro model and the rows.
    subprocess.run([sys.executable, str(script), "run", str(tmp_path), str(tmp_path / "single.json")], check=True, env=env)
    # `--cpu` alone starts ONE process in accelerate 1.16 (it expects mpirun for more); torchrun
    # via `--multi_gpu` starts two, and the trainer's use_cpu makes them talk over gloo.
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
    ]
    subprocess.run([*launch, str(script), "run", str(tmp_path), str(tmp_path / "multi.json")], check=True, env=env)
    multi = json.loads((tmp_path / "multi.json").read_text())
    assert multi["num_processes"] == 2
    done = subprocess.run(
        [sys.executable, str(script), "compare", str(tmp_path / "single.json"), str(tmp_path / "multi.json")],
        capture_output=True, text=True, env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
