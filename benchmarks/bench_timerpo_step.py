"""Benchmark: a TimerPO step against a plain GRPO step on the same batches, and where the extra goes.

Both trainers start from the same tiny-profile model (built here from scratch), the same rows
(AnomLLM series, clean plots, ExpCoT references) and the same seed, so their first batches are
identical, and run ``--steps`` optimizer steps each; the first step is a warm-up and not counted.
The pair is repeated ``--repeats`` times in alternation, so slow phases of a shared machine hit
both. Two modes:

* ``sampled``: rollouts are sampled by the model (the real step; generation included).
* ``scripted``: rollouts are fixed texts of ExpCoT-like length, identical in both trainers: no
  generation cost, so the TimerPO overhead is at its relative worst.

Printed: median seconds per step of each trainer (TRL's ``step_time``), the ratio, and the median
seconds and share of the TimerPO step spent in the extra response-token pass (``hidden``), the
reference-text pass (``reference``) and the OT + advantage maths (``ot``). A last table times the
response pass on one captured batch with the vision tower run once per distinct image (the
default) and once per rollout.

Run: ``python benchmarks/bench_timerpo_step.py [--prompts 8 --generations 4 --max-new 128]
[--steps 4 --repeats 2] [--threads 1] [--modes sampled scripted]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def build_rows(folder: Path, n: int, length: int) -> list[dict]:
    from anomseer.expert import write_trace
    from anomseer.render import RenderParams, render_png
    from anomseer.series import generate
    from anomseer.task import build_prompt, format_completion

    families = ("range", "point", "freq", "trend")
    rows = []
    for i in range(n):
        sample = generate(families[i % len(families)], i // len(families) + 1, seed=5, length=length)[-1]
        image = folder / f"s{i}.png"
        render_png(sample.values, image, RenderParams(width_px=448, height_px=112))
        trace = write_trace(sample)
        rows.append(
            {
                "uid": f"{sample.family}-{i}",
                "image": str(image),
                "prompt": build_prompt(length),
                "true_intervals": json.dumps([list(p) for p in sample.intervals]),
                "true_label": sample.label,
                "length": length,
                "reference_text": trace,
                "completion": format_completion(trace, sample.intervals, sample.label),
            }
        )
    return rows


def scripted_mixin(completions: list[str]):
    class Scripted:
        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
            eos = self._tokenizer.eos_token_id
            limit = self.max_completion_length
            out = []
            for r in range(len(prompt_ids)):
                ids = self._tokenizer(completions[r % len(completions)], add_special_tokens=False)["input_ids"]
                out.append((ids[: limit - 1] + [eos]))
            return out, None

    return Scripted


def run_pair(model_dir: Path, rows: list[dict], work: Path, args, mode: str, rep: int) -> dict:
    from trl import GRPOConfig, GRPOTrainer

    from anomseer.modeling.loading import load_model_and_processor
    from anomseer.training.timerpo import (
        OutcomeReward,
        TimerPOParams,
        TimerPOTrainer,
        build_dataset,
        make_config,
        vision_token_ids,
    )

    params = TimerPOParams(
        max_steps=args.steps, prompts_per_step=args.prompts, num_generations=args.generations,
        max_completion_length=args.max_new, seed=rep,
    )
    dataset = build_dataset(rows, params)
    mixins = (scripted_mixin([r["completion"] for r in rows for _ in range(args.generations)]),) if mode == "scripted" else ()
    result = {}
    order = ("grpo", "timerpo") if rep % 2 == 0 else ("timerpo", "grpo")
    for kind in order:
        config = make_config(params, work / f"{mode}_{kind}_{rep}", len(dataset))
        config.save_strategy = "no"
        model, processor = load_model_and_processor(model_dir)
        if kind == "timerpo":
            cls = type("BenchTimerPO", (*mixins, TimerPOTrainer), {})
            trainer = cls(model=model, args=config, train_dataset=dataset, processing_class=processor)
        else:
            plain = GRPOConfig(
                output_dir=config.output_dir, per_device_train_batch_size=config.per_device_train_batch_size,
                gradient_accumulation_steps=config.gradient_accumulation_steps, num_generations=config.num_generations,
                max_completion_length=config.max_completion_length, temperature=config.temperature,
                learning_rate=config.learning_rate, lr_scheduler_type="constant", weight_decay=config.weight_decay,
                max_grad_norm=config.max_grad_norm, beta=config.beta, epsilon=config.epsilon, loss_type="dapo",
                scale_rewards="none", entropy_coef=config.entropy_coef, use_bias_correction_kl=False,
                max_steps=config.max_steps, seed=config.seed, use_cpu=config.use_cpu, bf16=config.bf16,
                gradient_checkpointing=False, report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=1,
                generation_kwargs={"suppress_tokens": vision_token_ids(model.config)},  # as TimerPOTrainer
            )
            cls = type("BenchGRPO", (*mixins, GRPOTrainer), {})
            trainer = cls(model=model, reward_funcs=[OutcomeReward()], args=plain, train_dataset=dataset,
                          processing_class=processor)
        trainer.train()
        logs = [e for e in trainer.state.log_history if "step_time" in e][1:]  # drop the warm-up step
        result[kind] = {
            "step": [e["step_time"] for e in logs],
            "length": [e["completions/mean_length"] for e in logs],
        }
        if kind == "timerpo":
            for part in ("hidden", "reference", "ot"):
                result[kind][part] = [e[f"timerpo/time_{part}_s"] for e in logs]
            result["vision_sharing"] = time_response_pass(trainer)
    return result


def time_response_pass(trainer, repeats: int = 3) -> dict:
    """Seconds of the response-token pass on the last batch, with and without shared vision features."""
    batch = trainer._bench_batch if hasattr(trainer, "_bench_batch") else None
    if batch is None:
        return {}
    out = {}
    for share in (True, False):
        trainer.args.share_image_features = share
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            trainer._response_hidden_states(batch)
            times.append(time.perf_counter() - start)
        out["shared" if share else "per_rollout"] = min(times)
    trainer.args.share_image_features = True
    return out


def _keep_batch(cls):
    """Patch a trainer class to keep the last generated batch for `time_response_pass`."""
    original = cls._generate_and_score_completions

    def wrapped(self, inputs):
        output = original(self, inputs)
        self._bench_batch = output
        return output

    cls._generate_and_score_completions = wrapped


def median(values):
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step")
    parser.add_argument("--generations", type=int, default=4, help="rollouts per prompt (G)")
    parser.add_argument("--max-new", type=int, default=128, help="max completion tokens")
    parser.add_argument("--steps", type=int, default=4, help="steps per trainer and repeat (first is warm-up)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--length", type=int, default=1000, help="series length")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    parser.add_argument("--modes", nargs="+", default=["sampled", "scripted"], choices=["sampled", "scripted"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from anomseer.modeling.tiny import TinyModelParams, build_tiny_model
    from anomseer.task import build_prompt
    from anomseer.training.timerpo import TimerPOTrainer

    _keep_batch(TimerPOTrainer)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = build_rows(work, args.prompts, args.length)
        corpus = [build_prompt(args.length)] + [r["completion"] for r in rows]
        model_dir = build_tiny_model(work / "model", corpus, TinyModelParams(max_int=args.length))
        ref_tokens = None
        results = {mode: [] for mode in args.modes}
        for rep in range(args.repeats):
            for mode in args.modes:
                results[mode].append(run_pair(model_dir, rows, work, args, mode, rep))
        from anomseer.modeling.loading import load_processor

        tok = load_processor(model_dir).tokenizer
        ref_tokens = statistics.mean(len(tok(r["reference_text"])["input_ids"]) for r in rows)

    print(f"# tiny profile model, {args.prompts} prompts x G={args.generations}, max {args.max_new} new tokens, "
          f"{args.steps - 1} timed steps x {args.repeats} repeats, torch threads {args.threads}, "
          f"mean ExpCoT {ref_tokens:.0f} tokens")
    header = ("mode", "completion_len", "grpo_s", "timerpo_s", "ratio", "hidden_s", "hidden_%", "reference_s",
              "reference_%", "ot_s", "ot_%")
    print(" | ".join(header))
    for mode, reps in results.items():
        grpo = [t for r in reps for t in r["grpo"]["step"]]
        timer = [t for r in reps for t in r["timerpo"]["step"]]
        parts = {p: [t for r in reps for t in r["timerpo"][p]] for p in ("hidden", "reference", "ot")}
        lengths = [x for r in reps for x in r["timerpo"]["length"]]
        t_med = median(timer)
        row = [mode, f"{median(lengths):.0f}", f"{median(grpo):.3f}", f"{t_med:.3f}", f"{t_med / median(grpo):.3f}"]
        for p in ("hidden", "reference", "ot"):
            row += [f"{median(parts[p]):.3f}", f"{100 * median(parts[p]) / t_med:.1f}"]
        print(" | ".join(row))
    print()
    print("response pass on one batch | vision once per distinct image (s) | vision per rollout (s)")
    for mode, reps in results.items():
        sharing = reps[-1].get("vision_sharing") or {}
        if sharing:
            print(f"{mode} | {sharing['shared']:.3f} | {sharing['per_rollout']:.3f}")


if __name__ == "__main__":
    main()
