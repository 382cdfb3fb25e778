"""Check that TimerPO's advantages do not depend on how a batch is split across processes.

TRL spreads the G rollouts of a prompt over processes when the per-process batch is not a
multiple of G. TimerPO then needs the rewards *and* the OT similarities of whole groups; the
trainer gathers both before computing advantages. This script runs one TimerPO step on a fixed
batch whose completions are scripted (a deterministic function of the rollout's global index),
so a 1-process run and an N-process run see exactly the same rollouts, and writes what every
process used as its advantages.

    python scripts/check_multiprocess_advantages.py run WORK WORK/single.json   # prepares WORK first
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \
        --dynamo_backend no scripts/check_multiprocess_advantages.py run WORK WORK/multi.json
    python scripts/check_multiprocess_advantages.py compare WORK/single.json WORK/multi.json

On a CPU-only machine, ``--multi_gpu`` is what makes accelerate start two processes (through
torchrun; the trainer's ``use_cpu`` then joins them over gloo): ``accelerate launch --cpu
--num_processes 2`` starts ONE process in accelerate 1.16 unless an mpirun hostfile is given.
``prepare WORK`` alone builds the micro model and the rows.

`compare` exits 1 when the advantages differ by more than ``--atol`` (default 1e-5). The batch has
3 prompts x G = 4 rollouts, so with 2 processes (6 rollouts each) the second group spans both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_PROMPTS, GROUP, LENGTH = 3, 4, 250

#: Completions of varying quality: the reward differs inside a group and the texts differ in
#: length, so both A_main and A_sem are non-trivial.
SCRIPTED = (
    "<think>The series is flat except for a jump near 40.</think><answer>[[40, 52]]</answer><class>global point</class>",
    "<think>No value stands out.</think><answer>[]</answer><class>normal</class>",
    "<think>A spike.</think><answer>[[10, 20]]</answer><class>contextual point</class>",
    "<answer>[[0, 250]]</answer>",
    "<think>The level shifts upward around 60 and stays there for a while.</think>"
    "<answer>[[58, 70]]</answer><class>global point</class>",
)


def prepare(work: Path) -> None:
    """Build a micro model and the rows of the fixed batch under ``work``."""
    from anomseer.modeling.tiny import TinyModelParams, build_tiny_model
    from anomseer.render import RenderParams, render_png
    from anomseer.series import generate
    from anomseer.task import build_prompt

    work.mkdir(parents=True, exist_ok=True)
    samples = generate("range", N_PROMPTS, seed=7, length=LENGTH)
    rows = []
    for i, sample in enumerate(samples):
        image = work / f"series_{i}.png"
        render_png(sample.values, image, RenderParams(width_px=224, height_px=56))
        rows.append(
            {
                "uid": f"range-{i}",
                "image": str(image),
                "prompt": build_prompt(LENGTH),
                "true_intervals": json.dumps([list(p) for p in sample.intervals]),
                "true_label": sample.label,
                "length": LENGTH,
                "reference_text": f"Observation: the values near {10 * (i + 1)} stand far from the rest. "
                f"Conclusion: {sample.label} anomaly." * (i + 1),
            }
        )
    (work / "rows.json").write_text(json.dumps(rows, indent=1))
    params = TinyModelParams(
        text_hidden_size=64, text_layers=2, text_heads=2, text_kv_heads=1, text_intermediate_size=128,
        mrope_section=(4, 6, 6), max_position_embeddings=1024, vision_depth=2, vision_hidden_size=32,
        vision_heads=2, vision_intermediate_size=64, fullatt_block_indexes=(1,), window_size=56,
        image_width=224, image_height=56, vocab_size=700, max_int=LENGTH,
    )
    corpus = [build_prompt(LENGTH), *SCRIPTED, *(r["reference_text"] for r in rows)]
    build_tiny_model(work / "model", corpus, params)


def _scripted_trainer_class():
    from anomseer.training.timerpo import TimerPOTrainer

    class ScriptedTimerPOTrainer(TimerPOTrainer):
        """Completions are SCRIPTED[(7 * global_row + 3) % 5]: independent of the process layout."""

        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
            offset = self.accelerator.process_index * len(prompt_ids)
            eos = self._tokenizer.eos_token_id
            ids = []
            for row in range(len(prompt_ids)):
                text = SCRIPTED[(7 * (offset + row) + 3) % len(SCRIPTED)]
                ids.append(self._tokenizer(text, add_special_tokens=False)["input_ids"] + [eos])
            return ids, None

        def _generate_and_score_completions(self, inputs):
            from accelerate.utils import gather_object

            output = super()._generate_and_score_completions(inputs)
            self.record = {
                "uids": gather_object([x["uid"] for x in inputs]),
                "used_advantages": gather_object(output["advantages"].tolist()),
                "advantages": self.timerpo_last["advantages"].tolist(),
                "a_main": self.timerpo_last["a_main"].tolist(),
                "trl_advantages": gather_object(self.timerpo_last["trl_advantages"].tolist()),
                "rewards": self.timerpo_last["rewards"].tolist(),
                "similarity": self.timerpo_last["similarity"].tolist(),
                "num_processes": self.accelerator.num_processes,
            }
            return output

    return ScriptedTimerPOTrainer


def run(work: Path, out: Path) -> None:
    """One TimerPO step on the fixed batch; the main process writes the record to ``out``."""
    import torch

    from anomseer.modeling.loading import load_model_and_processor
    from anomseer.training.timerpo import TimerPOParams, build_dataset, make_config

    torch.set_num_threads(1)  # two processes share two cores
    if not (work / "rows.json").is_file():
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise FileNotFoundError(f"{work} is not prepared: run `{Path(__file__).name} prepare {work}` first")
        prepare(work)
    rows = json.loads((work / "rows.json").read_text())
    params = TimerPOParams(
        max_steps=1, prompts_per_step=N_PROMPTS, num_generations=GROUP, max_completion_length=64,
        save_steps=1000, alpha=0.5,
    )
    dataset = build_dataset(rows, params)
    config = make_config(params, work / f"trainer_{os.getpid()}", len(dataset))
    config.save_strategy = "no"
    model, processor = load_model_and_processor(work / "model")
    trainer = _scripted_trainer_class()(model=model, args=config, train_dataset=dataset, processing_class=processor)
    trainer.train()
    if trainer.accelerator.is_main_process:
        out.write_text(json.dumps(trainer.record, indent=1))


def compare(single: Path, multi: Path, atol: float) -> int:
    """Print the largest differences; 0 when the multi-process advantages match the single ones."""
    a, b = json.loads(single.read_text()), json.loads(multi.read_text())
    if a["uids"] != b["uids"]:
        print(f"different batches: {a['uids']} vs {b['uids']}")
        return 1
    report = {}
    for key in ("rewards", "similarity", "a_main", "trl_advantages", "advantages", "used_advantages"):
        report[key] = max(abs(x - y) for x, y in zip(a[key], b[key], strict=True))
    # Within each run, every process must train on its slice of the gathered advantages, and
    # TimerPO's A_main must be TRL's own group-centred advantage (same reward layout).
    for name, rec in (("single", a), ("multi", b)):
        report[f"{name}_used_vs_computed"] = max(
            abs(x - y) for x, y in zip(rec["used_advantages"], rec["advantages"], strict=True)
        )
        report[f"{name}_a_main_vs_trl"] = max(
            abs(x - y) for x, y in zip(rec["a_main"], rec["trl_advantages"], strict=True)
        )
    print(json.dumps({"processes": [a["num_processes"], b["num_processes"]], "max_abs_diff": report}, indent=1))
    return 0 if all(v <= atol for v in report.values()) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("work", type=Path)
    r = sub.add_parser("run")
    r.add_argument("work", type=Path)
    r.add_argument("out", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("single", type=Path)
    c.add_argument("multi", type=Path)
    c.add_argument("--atol", type=float, default=1e-5)
    args = parser.parse_args(argv)
    if args.cmd == "prepare":
        prepare(args.work)
        return 0
    if args.cmd == "run":
        run(args.work, args.out)
        return 0
    return compare(args.single, args.multi, args.atol)


if __name__ == "__main__":
    raise SystemExit(main())
