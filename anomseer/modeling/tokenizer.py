"""A byte-level BPE tokenizer trained on this project's own text, shaped like Qwen2.5-VL's.

The tiny profile cannot download Qwen's 151k-token vocabulary, and would not want it: a model of a
few million parameters spends most of them on an embedding that large. Instead we train a small
byte-level BPE on the prompts, expert traces and completions of this project, and keep everything
else Qwen-shaped so the same code path runs the real checkpoints:

- Qwen2.5's pre-tokenizer regex and byte-level alphabet (any text encodes, nothing is unknown);
- Qwen2.5-VL's special tokens (``<|im_start|>``, ``<|image_pad|>``, ...) and its chat template;
- eos ``<|im_end|>``, pad ``<|endoftext|>``, no bos, as in the Instruct checkpoints.

Two deliberate departures, both for localization (see design.md, "What a tiny model learns"):

1. Every integer ``0..max_int`` is ONE token. Qwen splits numbers into single digits, so an
   interval end like ``537`` costs three predictions, each of which must be right. Here the
   pre-tokenizer isolates runs of ASCII digits and the BPE model is built with
   ``ignore_merges=True``: a run that is in the vocabulary is emitted whole, and a longer one
   (``12345`` when ``max_int`` is 1000) falls back to single digits, so every number still
   encodes. The text format is unchanged: ``[[12, 40]]`` is ``[[``, ``12``, ``, ``, ``40``, ``]]``.
   Digits are split one by one while the BPE is trained, so no vocabulary is wasted on digit
   merges that ``ignore_merges`` would shadow anyway.
2. Punctuation may carry one trailing space when a digit follows (``", "`` before ``40``), so a
   list of intervals costs one token per separator instead of two.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

# Qwen2.5's split regex with two edits: `[0-9]+` keeps ASCII digit runs whole (other numerals stay
# single characters, as in Qwen) and punctuation may absorb one space that precedes a digit.
_PUNCT = r" ?[^\s\p{L}\p{N}]+(?:[\r\n]+| (?=[0-9]))?"
_QWEN_HEAD = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"
_QWEN_TAIL = r"|\s*[\r\n]+|\s+(?!\S)|\s+"
#: Pattern used while training the BPE: every digit is its own word, so no digit merges are learnt.
TRAIN_SPLIT_PATTERN = _QWEN_HEAD + r"\p{N}|" + _PUNCT + _QWEN_TAIL
#: Pattern used at encode time: ASCII digit runs stay whole and are looked up as integer tokens.
ENCODE_SPLIT_PATTERN = _QWEN_HEAD + r"[0-9]+|\p{N}|" + _PUNCT + _QWEN_TAIL

#: Qwen2.5-VL's special tokens, in the order of their ids in the released checkpoints (151643..).
#: The model config refers to <|vision_start|>, <|vision_end|>, <|vision_pad|>, <|image_pad|> and
#: <|video_pad|>; the processor to <|image_pad|> and <|video_pad|>; the chat template to the rest.
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
#: Not special in Qwen (they decode with skip_special_tokens) but single tokens there too.
QWEN_PLAIN_ADDED_TOKENS: tuple[str, ...] = ("<tool_call>", "</tool_call>")

EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

#: The chat template of Qwen2.5-VL-*-Instruct: a default system turn, one image placeholder block
#: per image item, ``<|im_start|>assistant\n`` as the generation prompt.
QWEN25_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The words the chat template wraps around every sample; trained alongside each corpus document
# so that role names and the default system prompt get merges in proportion to how often the
# model reads them.
_CHAT_SCAFFOLD = f"system\n{DEFAULT_SYSTEM_PROMPT}\nuser\nassistant\n"
_MAX_MODEL_LENGTH = 32768


def _split(pattern: str) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def _with_scaffold(corpus: Iterable[str], counter: list[int]) -> Iterator[str]:
    for text in corpus:
        if not isinstance(text, str):
            raise ValueError(f"corpus items must be str, got {type(text).__name__}")
        counter[0] += 1
        yield text
        yield _CHAT_SCAFFOLD


def fixed_token_count(max_int: int) -> int:
    """Tokens that exist whatever the corpus: 256 bytes, integers 10..max_int, Qwen's added tokens.

    (``0``..``9`` are bytes already.) ``train_tokenizer`` needs ``vocab_size`` above this.
    """
    return 256 + max(0, max_int - 9) + len(QWEN_SPECIAL_TOKENS) + len(QWEN_PLAIN_ADDED_TOKENS)


def train_tokenizer(corpus: Iterable[str], vocab_size: int, max_int: int) -> PreTrainedTokenizerFast:
    """Train the project's byte-level BPE tokenizer (see the module docstring).

    Args:
        corpus: the texts the model will read and write (prompts, expert traces, completions).
            Consumed once; order matters only through BPE tie-breaking, which is deterministic.
        vocab_size: target size of the whole vocabulary (bytes + learnt merges + integers +
            special tokens). Reached exactly unless the corpus runs out of pairs to merge.
        max_int: every integer ``0..max_int`` becomes one token (use the longest series length).

    Returns:
        A ``PreTrainedTokenizerFast`` with Qwen2.5-VL's special tokens and chat template, eos
        ``<|im_end|>``, pad ``<|endoftext|>``; ``decode(encode(text)) == text`` for any text.
    """
    if not isinstance(max_int, int) or max_int < 9:
        raise ValueError(f"max_int must be an int >= 9 (the longest series length), got {max_int!r}")
    floor = fixed_token_count(max_int)
    if not isinstance(vocab_size, int) or vocab_size <= floor:
        raise ValueError(
            f"vocab_size must exceed {floor} (256 bytes + {max_int - 9} integer tokens + "
            f"{floor - 256 - (max_int - 9)} special tokens) to leave room for learnt merges; got {vocab_size!r}"
        )
    n_integers = max_int - 9
    n_added = len(QWEN_SPECIAL_TOKENS) + len(QWEN_PLAIN_ADDED_TOKENS)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = _split(TRAIN_SPLIT_PATTERN)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - n_integers - n_added,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    docs = [0]
    bpe.train_from_iterator(_with_scaffold(corpus, docs), trainer=trainer)
    if docs[0] == 0:
        raise ValueError("corpus is empty: pass the prompts, traces and completions the model will see")

    # Rebuild the model with the integer tokens and the encode-time split; the JSON form is the
    # tokenizers library's stable interface for this.
    spec = json.loads(bpe.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    for n in range(10, max_int + 1):
        token = str(n)
        if token in vocab:  # impossible while training splits digits; guard the invariant
            raise RuntimeError(f"BPE learnt a digit merge {token!r}; the training split pattern is broken")
        vocab[token] = len(vocab)
    spec["model"]["ignore_merges"] = True
    spec["pre_tokenizer"] = json.loads(_split(ENCODE_SPLIT_PATTERN).__getstate__())
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN_PLAIN_ADDED_TOKENS])

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        bos_token=None,
        unk_token=None,
        chat_template=QWEN25_VL_CHAT_TEMPLATE,
        model_max_length=_MAX_MODEL_LENGTH,
        clean_up_tokenization_spaces=False,
        padding_side="right",
    )
