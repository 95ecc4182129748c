"""The table of ggml tensor types a GGUF file may name, including bitnet.cpp's clashing fork ids.

Upstream types come from `gguf.constants` (`GGMLQuantizationType`, `GGML_QUANT_SIZES`). bitnet.cpp's
llama.cpp fork reuses ids that upstream gives other meanings (or none):

    id   bitnet.cpp fork            upstream ggml
    36   I2_S  (2-bit, x86 layout)  unassigned (PyPI gguf rejects it)
    37   I8_S  (activations only)   unassigned
    38   TL1   (ARM LUT tiles)      unassigned
    39   TL2   (x86 LUT tiles)      MXFP4

So an id alone does not say what a tensor is. `resolve_type` decides from the file's context (see
`ForkContext`) and returns the decision as a `GGMLType` whose `interpretation` says why, for
`tritium inspect`. I2_S is sized by its own rule (K*M/4 + 32 bytes), not by a block table.
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
from tritium.core.errors import ModelFormatError

QK_K = 256  # values per TQ1_0/TQ2_0 block
QK_I2_S = 128  # values per x86 I2_S block (32 bytes)
I2_S_TAIL = 32  # float32 per-tensor scale + 28 padding bytes after the packed codes

# bitnet.cpp fork ids (ggml.h of its llama.cpp fork) and its file types (llama.h LLAMA_FTYPE_MOSTLY_*).
FORK_I2_S, FORK_I8_S, FORK_TL1, FORK_TL2 = 36, 37, 38, 39
FORK_FTYPE_TL1, FORK_FTYPE_TL2, FORK_FTYPE_I2_S = 38, 39, 40
# Architectures that only bitnet.cpp's fork defines; `bitnet` exists in both projects.
FORK_ONLY_ARCHES = frozenset({"bitnet-b1.58", "bitnet-25"})


@dataclass(frozen=True)
class GGMLType:
    """One resolved tensor type: its name, id and how its byte size follows from its shape."""

    type_id: int
    name: str
    block_size: int  # values per block along ne0 (1 for I2_S, which has its own size rule)
    type_size: int  # bytes per block
    interpretation: str = ""  # non-empty when the id needed a decision (fork ids)

    def nbytes(self, ne: tuple[int, ...]) -> int:
        """Bytes a tensor of ggml shape `ne` occupies (ne0 must be a multiple of block_size)."""
        n = 1
        for d in ne:
            n *= d
        if self.name in ("I2_S", "TL1"):  # Tritium TL1 (tritium-tl1-v1) has the I2_S size rule
            return n // 4 + I2_S_TAIL
        return n // self.block_size * self.type_size


@dataclass(frozen=True)
class ForkContext:
    """What a file says about its origin, used to read the clashing ids 36..39."""

    architecture: str | None
    file_type: int | None
    has_type_36: bool  # any tensor uses id 36, which only bitnet.cpp assigns
    tritium_tl1: bool = False  # metadata tritium.tl1.layout == "tritium-tl1-v1": id 38 is Tritium's TL1

    @property
    def is_bitnet_cpp(self) -> bool:
        """True when the file comes from bitnet.cpp's fork (so 39 is TL2, not MXFP4)."""
        if self.architecture in FORK_ONLY_ARCHES or self.has_type_36:
            return True
        return self.architecture == "bitnet" and self.file_type in (
            FORK_FTYPE_TL1, FORK_FTYPE_TL2, FORK_FTYPE_I2_S)

    def reason(self) -> str:
        """Human-readable evidence for the bitnet.cpp reading."""
        why = []
        if self.architecture in FORK_ONLY_ARCHES:
            why.append(f"architecture '{self.architecture}' exists only in bitnet.cpp")
        if self.has_type_36:
            why.append("type id 36 is assigned only by bitnet.cpp (I2_S)")
        if self.architecture == "bitnet" and self.file_type in (
                FORK_FTYPE_TL1, FORK_FTYPE_TL2, FORK_FTYPE_I2_S):
            name = {38: "TL1", 39: "TL2", 40: "I2_S"}[self.file_type]
            why.append(f"general.file_type {self.file_type} = bitnet.cpp MOSTLY_{name}")
        return "; ".join(why) if why else "no bitnet.cpp markers"


_TL_REASON = (
    "bitnet.cpp {name} files store weights in LUT tiles whose layout depends on the kernel codegen "
    "parameters (BM/BK/bm) the file was converted with, so they only run on a bitnet.cpp binary built "
    "from the same codegen; Tritium does not read them. Convert the model to I2_S (llama-quantize ... "
    "I2_S) or to TQ2_0/TQ1_0 instead"
)


def resolve_type(type_id: int, ctx: ForkContext, *, where: str) -> GGMLType:
    """The type a tensor's id means in a file with context `ctx`.

    Raises ModelFormatError (naming `where`, e.g. "model.gguf: tensor 'blk.0.attn_q.weight'") for ids
    no project assigns, for bitnet.cpp's TL1/TL2 tiles and for its I8_S activation type.
    """
    if type_id == FORK_I2_S:
        why = ("bitnet.cpp I2_S (x86 layout: 128-value blocks of 32 bytes, one float32 scale per tensor "
               "after the codes); upstream ggml assigns no type 36")
        if ctx.is_bitnet_cpp:
            why += f" [{ctx.reason()}]"
        return GGMLType(FORK_I2_S, "I2_S", 1, 1, why)
    if type_id == FORK_I8_S and ctx.is_bitnet_cpp:
        raise ModelFormatError(
            f"{where}: type id 37 is bitnet.cpp's I8_S, an activation type that never holds weights "
            f"in a model file (expected F32/F16/BF16/Q8_0/TQ1_0/TQ2_0/I2_S)")
    if type_id == FORK_TL1 and ctx.tritium_tl1:
        return GGMLType(FORK_TL1, "TL1", 1, 1, "Tritium TL1 (layout tritium-tl1-v1: bitnet.cpp's pair code "
                        "3*w0+w1+4 in fixed 16x32 tiles, one float32 scale per tensor; see "
                        "core/formats/tl1_layout.py)")
    if type_id in (FORK_TL1, FORK_TL2) and ctx.is_bitnet_cpp:
        name = "TL1" if type_id == FORK_TL1 else "TL2"
        raise ModelFormatError(
            f"{where}: type id {type_id} read as bitnet.cpp {name} ({ctx.reason()}): "
            + _TL_REASON.format(name=name))
    try:
        qtype = GGMLQuantizationType(type_id)
    except ValueError:
        raise ModelFormatError(
            f"{where}: unknown ggml tensor type id {type_id} (neither upstream ggml nor bitnet.cpp's "
            f"fork assigns it)") from None
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    note = ""
    if type_id == FORK_TL2:
        note = f"upstream MXFP4 (id 39 would be bitnet.cpp TL2, but {ctx.reason()})"
    return GGMLType(int(qtype), qtype.name, block_size, type_size, note)


def upstream_type(name: str) -> GGMLType:
    """The GGMLType of an upstream type by name ("F32", "TQ2_0", ...) or "I2_S" (for writers)."""
    if name == "I2_S":
        return GGMLType(FORK_I2_S, "I2_S", 1, 1)
    if name == "TL1":  # Tritium's TL1 layout (core/formats/tl1_layout.py)
        return GGMLType(FORK_TL1, "TL1", 1, 1)
    qtype = GGMLQuantizationType[name]
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    return GGMLType(int(qtype), qtype.name, block_size, type_size)
