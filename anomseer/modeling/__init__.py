"""The model layer: one Qwen2.5-VL code path for the tiny and the paper profiles.

- :mod:`anomseer.modeling.tokenizer`: byte-level BPE trained on the project corpus, Qwen's
  special tokens and chat template, every integer ``0..max_int`` one token.
- :mod:`anomseer.modeling.processor`: ``ImageOnlyQwen25VLProcessor`` (no torchvision needed),
  ``image_token_count``.
- :mod:`anomseer.modeling.tiny`: ``TinyModelParams``, ``build_tiny_model`` (from-scratch model).
- :mod:`anomseer.modeling.loading`: ``load_model_and_processor`` for any Qwen2.5-VL folder,
  ``count_parameters``.
- :mod:`anomseer.modeling.source`: where the lineage's base model comes from.

Import the submodules directly; this package imports nothing heavy on purpose.
"""
