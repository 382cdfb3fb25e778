"""Where the base model of the lineage comes from: built from scratch (tiny) or a pretrained
Qwen2.5-VL checkpoint (paper)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BaseModelParams:
    """Attributes:
    source: ``tiny`` builds a small Qwen2.5-VL from the ``model`` section and a tokenizer trained
        on this project's corpus; ``pretrained`` loads ``path``.
    path: local folder or hub id of Qwen2.5-VL-3B/7B-Instruct (only for ``pretrained``; the hub
        is only reached if the folder is not local and the machine is online).
    """

    source: str = "tiny"
    path: str = ""

    def validate(self) -> None:
        if self.source not in ("tiny", "pretrained"):
            raise ValueError(f"source must be 'tiny' or 'pretrained', got {self.source!r}")
        if self.source == "pretrained" and not self.path:
            raise ValueError("path must name a Qwen2.5-VL checkpoint folder or hub id when source is 'pretrained'")
