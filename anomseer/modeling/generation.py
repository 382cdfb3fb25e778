"""Batched generation of completions for plots: shared by evaluation, detection and the pyfunc.

Left padding so every prompt ends where generation starts; greedy by default (validation in the
reference samples at 0.4, a params option), seeded when sampling.
"""

from __future__ import annotations

from typing import Sequence

from PIL import Image


def generate_completions(
    model,
    processor,
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    batch_size: int = 16,
    seed: int = 0,
    progress=None,
) -> list[str]:
    """One completion (decoded, special tokens dropped) per (image, prompt) pair.

    Args:
        images: RGB plots, already at the processor's configured size or resized by it.
        prompts: the user text for each image (see :func:`anomseer.task.build_prompt`).
        temperature: 0 = greedy decoding.
        progress: optional callable(done, total).
    """
    import torch

    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts: pass one prompt per image")
    tok = processor.tokenizer
    old_side = tok.padding_side
    tok.padding_side = "left"
    out: list[str] = []
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            imgs = list(images[start : start + batch_size])
            texts = [
                processor.apply_chat_template(
                    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}],
                    add_generation_prompt=True,
                    tokenize=False,
                )
                for p in prompts[start : start + batch_size]
            ]
            inputs = processor(text=texts, images=imgs, return_tensors="pt", padding=True)
            inputs = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in inputs.items()}
            kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
            if temperature > 0:
                torch.manual_seed(seed + start)
                kwargs.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
            else:
                kwargs.update(do_sample=False)
            with torch.inference_mode():
                ids = model.generate(**inputs, **kwargs)
            new = ids[:, inputs["input_ids"].shape[1] :]
            out.extend(tok.batch_decode(new, skip_special_tokens=True))
            if progress:
                progress(len(out), len(images))
    finally:
        tok.padding_side = old_side
    return out
