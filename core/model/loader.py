"""`load_model(path)`: one entry point for every model source Tritium reads.

A file starting with the GGUF magic goes to `core/formats/gguf_model.py`; a directory with a config.json
(a Hugging Face BitNetForCausalLM folder) goes to `core/formats/hf_model.py`. Both return a `LoadedModel`:
config, weights (memory-mapped views where the layout allows), tokenizer, the tensor table and the lines
saying how the source was interpreted (`tritium inspect` prints them). No forward-pass logic lives here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tritium.core.errors import ModelFormatError
from tritium.core.model.config import ModelConfig
from tritium.core.model.weights import ModelWeights


@dataclass(frozen=True)
class TensorInfo:
    """One stored tensor as the file describes it (for `tritium inspect` and error messages).

    ggml_shape is in ggml order (ne0 = the contiguous/input dim first; HF loaders give the
    reversed safetensors shape); offset is the absolute byte offset of its data in the file.
    """

    name: str
    type_name: str
    ggml_shape: tuple[int, ...]
    nbytes: int
    offset: int


@dataclass
class LoadedModel:
    """A model ready for the compute runtime."""

    path: Path
    format: Literal["gguf", "hf"]
    config: ModelConfig
    weights: ModelWeights
    tokenizer: object  # tritium.core.tokenizer.Tokenizer (kept untyped: no import cycle with the tokenizer)
    tensors: list[TensorInfo] = field(default_factory=list)
    metadata: dict[str, object] = field(default_factory=dict)
    interpretation: list[str] = field(default_factory=list)


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Load a GGUF file or a Hugging Face folder; raise ModelFormatError if it is neither or is invalid."""
    p = Path(path)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelFormatError(f"{p}: expected a Hugging Face model folder with config.json, found none")
        from tritium.core.formats.hf_model import load_hf_folder

        return load_hf_folder(p)
    if not p.exists():
        raise ModelFormatError(f"{p}: no such file or folder")
    try:
        with p.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelFormatError(f"{p}: cannot read the file ({e.strerror})") from None
    if magic != b"GGUF":
        raise ModelFormatError(f"{p}: expected a GGUF file (magic b'GGUF') or a Hugging Face folder, "
                               f"found a file starting with {magic!r}")
    from tritium.core.formats.gguf_model import load_gguf

    return load_gguf(p)
