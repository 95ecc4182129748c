"""Paths and builders shared by the Hugging Face tests: the committed fixtures (made by
tests/fixtures/make_hf_fixtures.py with transformers) and numpy re-saves of them in other forms."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from hf_checkpoint import read_safetensors_numpy, unpack_hf, write_safetensors

HF_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf"
NAMES = ["online-bf16-mha-tied", "packed-bf16-gqa-untied", "bitlinear-f32-mha-tied", "sharded-bf16-gqa-silu"]
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def reference(name: str) -> dict:
    return json.loads((HF_FIXTURES / f"{name}.json").read_text())


def reference_logits(name: str) -> np.ndarray:
    return np.load(HF_FIXTURES / f"{name}.logits.npy")


def all_tensors(folder: Path) -> dict[str, tuple[str, np.ndarray]]:
    """Every tensor of a (possibly sharded) folder, for rewriting."""
    out: dict[str, tuple[str, np.ndarray]] = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(read_safetensors_numpy(f))
    return out


def copy_fixture(name: str, dest: Path) -> Path:
    folder = dest / name
    shutil.copytree(HF_FIXTURES / name, folder)
    return folder


def rewrite_weights(folder: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    """Replace the folder's weights by one model.safetensors holding `tensors`."""
    for f in list(folder.glob("*.safetensors")) + list(folder.glob("*.safetensors.index.json")):
        f.unlink()
    write_safetensors(folder / "model.safetensors", tensors)


def edit_config(folder: Path, **changes: object) -> None:
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    for key, value in changes.items():
        if value is ...:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    path.write_text(json.dumps(cfg))


def derive_f32_master(dest: Path) -> Path:
    """online-bf16-mha-tied re-saved with F32 master weights (the same values)."""
    folder = copy_fixture("online-bf16-mha-tied", dest)
    tensors = {n: ("F32", (a.astype(np.uint32) << 16).view(np.float32)) if d == "BF16" else (d, a)
               for n, (d, a) in all_tensors(folder).items()}
    rewrite_weights(folder, tensors)
    edit_config(folder, dtype="float32")
    return folder


def derive_unpacked_ternary(name: str, dest: Path, dtype: str = "F32") -> Path:
    """A packed autobitlinear fixture re-saved as unpacked ternary floats + weight_scale
    (what transformers' save_pretrained writes for an offline AutoBitLinear model)."""
    folder = copy_fixture(name, dest)
    tensors = {}
    for n, (d, a) in all_tensors(folder).items():
        tensors[n] = (dtype, unpack_hf(a).astype(np.float32)) if d == "U8" else (d, a)
    rewrite_weights(folder, tensors)
    return folder
