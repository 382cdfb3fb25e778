"""Model layer: project tokenizer, image-only processor, tiny Qwen2.5-VL builder and loader."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch
from PIL import Image

from _tiny_fixtures import (  # noqa: F401  (fixtures are used by name)
    MICRO_PARAMS,
    PROMPT,
    corpus_for,
    micro_model_dir,
    one_torch_thread,
    sine_completion,
    sine_dataset,
)
from anomseer.modeling.loading import count_parameters, load_model_and_processor
from anomseer.modeling.processor import ImageOnlyQwen25VLProcessor, build_image_processor, image_token_count
from anomseer.modeling.tiny import TinyModelParams, build_tiny_model
from anomseer.modeling.tokenizer import QWEN_SPECIAL_TOKENS, fixed_token_count, train_tokenizer

COMPLETIONS = [
    sine_completion(12, 40),
    "<think>Global scan: max |z| = 7.31 at index 512; the 3-sigma range check flags 500-530.</think>"
    "<answer>[[500, 530], [871, 900]]</answer><class>global point</class>",
    "<think>Nothing stands out.</think><answer>[]</answer><class>normal</class>",
    "<think>Slope jumps from 0.003 to -0.018 (×6) at t=250\nthen returns.</think><answer>[[250, 350]]</answer><class>trend</class>",
]


@pytest.fixture(scope="module")
def tokenizer():
    corpus = COMPLETIONS * 20 + [PROMPT.format(length=n) for n in (100, 400, 1000)] * 10
    return train_tokenizer(corpus, vocab_size=fixed_token_count(1000) + 200, max_int=1000)


def test_tokenizer_round_trips_representative_text(tokenizer):
    odd = ["x = -12.5e3, 1001 and 123456789", "ünïcødé ☃ tabs\tand\r\nnewlines", "007 0 00 1000"]
    for text in COMPLETIONS + odd:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text


def test_every_integer_up_to_max_int_is_one_token(tokenizer):
    for n in range(1001):
        assert len(tokenizer.encode(str(n), add_special_tokens=False)) == 1, n
    pieces = tokenizer.convert_ids_to_tokens(tokenizer.encode("[[12, 40]]", add_special_tokens=False))
    assert "12" in pieces and "40" in pieces and pieces.index("40") - pieces.index("12") == 2
    assert tokenizer.convert_tokens_to_ids(",Ġ") in tokenizer.encode("[[12, 40]]", add_special_tokens=False)


def test_integers_beyond_max_int_fall_back_to_digits(tokenizer):
    ids = tokenizer.encode("1001", add_special_tokens=False)
    assert tokenizer.convert_ids_to_tokens(ids) == ["1", "0", "0", "1"]
    assert tokenizer.decode(tokenizer.encode("99999", add_special_tokens=False)) == "99999"


def test_qwen_special_tokens_are_single_tokens_and_template_has_image_block(tokenizer):
    for token in QWEN_SPECIAL_TOKENS:
        assert tokenizer.encode(token, add_special_tokens=False) == [tokenizer.convert_tokens_to_ids(token)]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>" and tokenizer.bos_token is None
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}], tokenize=False, add_generation_prompt=True
    )
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_tokenizer_training_is_deterministic_and_hits_the_vocab_target():
    corpus = COMPLETIONS * 20
    first = train_tokenizer(corpus, vocab_size=fixed_token_count(200) + 100, max_int=200)
    second = train_tokenizer(iter(corpus), vocab_size=fixed_token_count(200) + 100, max_int=200)
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()
    assert len(first) == fixed_token_count(200) + 100


def test_tokenizer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(COMPLETIONS, vocab_size=300, max_int=1000)
    with pytest.raises(ValueError, match="corpus is empty"):
        train_tokenizer([], vocab_size=2048, max_int=100)
    with pytest.raises(ValueError, match="max_int"):
        train_tokenizer(COMPLETIONS, vocab_size=2048, max_int=3)


def test_processor_pins_every_plot_to_the_grid_and_round_trips(tmp_path, tokenizer):
    processor = ImageOnlyQwen25VLProcessor(build_image_processor(448, 112), tokenizer, plot_size=(448, 112))
    assert image_token_count(processor) == 64
    processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "processor_config.json").read_text())["processor_class"] == "Qwen2_5_VLProcessor"
    loaded = ImageOnlyQwen25VLProcessor.from_pretrained(tmp_path)
    assert loaded.plot_size == [448, 112]
    assert loaded.image_processor.min_pixels == loaded.image_processor.max_pixels == 448 * 112
    assert loaded.tokenizer.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "plot"}]}]
    text = loaded.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    odd_sizes = [Image.new("RGB", (1000, 150), "white"), Image.new("RGBA", (300, 300), "white")]
    batch = loaded(images=odd_sizes, text=[text, text], padding=True, return_tensors="pt")
    assert batch["image_grid_thw"].tolist() == [[1, 8, 32], [1, 8, 32]]
    assert batch["pixel_values"].shape == (2 * 256, 3 * 2 * 14 * 14)
    assert (batch["input_ids"] == loaded.image_token_id).sum(dim=1).tolist() == [64, 64]
    with pytest.raises(ValueError, match="images only"):
        loaded(text=[text], videos=[odd_sizes])


def test_image_token_count_follows_qwen_dynamic_resolution_without_plot_size(tokenizer):
    processor = ImageOnlyQwen25VLProcessor(build_image_processor(448, 112), tokenizer)
    processor.image_processor.min_pixels, processor.image_processor.max_pixels = 56 * 56, 28 * 28 * 1280
    # Qwen's smart_resize maps the reference 1000 x 150 plot to 1008 x 140 px: 72 x 10 patches.
    assert image_token_count(processor, (1000, 150)) == 72 * 10 // 4
    with pytest.raises(ValueError, match="image_size"):
        image_token_count(processor)


def test_tiny_params_validate_names_the_field():
    TinyModelParams().validate()
    assert TinyModelParams().image_tokens == 64
    for change, field in [
        (dict(image_width=450), "image width"),
        (dict(text_kv_heads=3), "text_kv_heads"),
        (dict(mrope_section=(8, 8, 8)), "mrope_section"),
        (dict(vocab_size=1000), "vocab_size"),
        (dict(fullatt_block_indexes=(4,)), "fullatt_block_indexes"),
        (dict(text_layers=0), "text_layers"),
    ]:
        with pytest.raises(ValueError, match=field):
            replace(TinyModelParams(), **change).validate()


def _weights(path):
    model, _ = load_model_and_processor(path)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_gives_identical_weights_and_another_seed_does_not(tmp_path, micro_model_dir, sine_dataset):
    corpus = corpus_for(sine_dataset)
    again = build_tiny_model(tmp_path / "again", corpus, MICRO_PARAMS)
    other = build_tiny_model(tmp_path / "other", corpus, replace(MICRO_PARAMS, seed=1))
    reference, same, different = _weights(micro_model_dir), _weights(again), _weights(other)
    assert reference.keys() == same.keys() == different.keys()
    assert all(torch.equal(reference[k], same[k]) for k in reference)
    assert not torch.equal(reference["model.language_model.embed_tokens.weight"], different["model.language_model.embed_tokens.weight"])


def test_saved_tiny_model_reloads_and_generates_from_an_image_and_prompt(micro_model_dir, sine_dataset):
    model, processor = load_model_and_processor(micro_model_dir)
    assert model.config.model_type == "qwen2_5_vl" and not model.training
    assert model.config.vision_config.hidden_size == MICRO_PARAMS.vision_hidden_size
    assert model.config.text_config.hidden_size == MICRO_PARAMS.text_hidden_size
    assert model.config.image_token_id == processor.image_token_id
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": sine_dataset[0]["prompt"]}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[Image.open(sine_dataset[0]["image"])], text=[text], return_tensors="pt")
    assert (inputs["input_ids"] == processor.image_token_id).sum() == image_token_count(processor) == MICRO_PARAMS.image_tokens
    torch.manual_seed(0)
    out = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :]
    assert new.shape == (8,)
    assert isinstance(processor.batch_decode(new[None]), list)
    # Greedy decoding is a pure function of the weights: a second call repeats it exactly.
    assert torch.equal(model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False), out)


def test_count_parameters_splits_text_and_vision(micro_model_dir):
    model, _ = load_model_and_processor(micro_model_dir)
    counts = count_parameters(model)
    unique = {id(p): p.numel() for p in model.parameters()}
    assert counts["total"] == sum(unique.values())
    assert counts["vision"] == sum(p.numel() for p in model.model.visual.parameters())
    assert counts["text"] == counts["total"] - counts["vision"] > 0
    # Tied embeddings: the head shares the input embedding, counted once.
    assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()


def test_default_tiny_model_dimensions(tmp_path, sine_dataset):
    path = build_tiny_model(tmp_path / "tiny", corpus_for(sine_dataset) * 5)
    model, processor = load_model_and_processor(path)
    counts = count_parameters(model)
    hidden, vocab = 256, len(processor.tokenizer)
    layer = (hidden * 256 + 256) + 2 * (hidden * 128 + 128) + 256 * hidden + 3 * hidden * 512 + 2 * hidden
    assert counts["text"] == vocab * hidden + 4 * layer + hidden
    assert image_token_count(processor) == 64
    assert 500_000 < counts["vision"] < 2_000_000


def test_loader_errors_say_what_to_do(tmp_path, micro_model_dir):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*sft_checkpoint.*Qwen2.5-VL-3B/7B-Instruct"):
        load_model_and_processor(tmp_path / "missing")
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="'llama'"):
        load_model_and_processor(tmp_path / "llama")


def test_real_style_folder_with_video_processor_still_loads_image_only(tmp_path, micro_model_dir):
    real = tmp_path / "real"
    shutil.copytree(micro_model_dir, real)
    config = json.loads((real / "processor_config.json").read_text())
    del config["plot_size"]
    (real / "processor_config.json").write_text(json.dumps(config))
    (real / "video_preprocessor_config.json").write_text(
        json.dumps({"video_processor_type": "Qwen2VLVideoProcessor", "processor_class": "Qwen2_5_VLProcessor", "patch_size": 14})
    )
    model, processor = load_model_and_processor(real)
    assert isinstance(processor, ImageOnlyQwen25VLProcessor)
    assert processor.plot_size is None and not hasattr(processor, "video_processor")
