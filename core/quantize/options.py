"""Options of `tritium quantize` (the seed's quantizer table) and their QuantizerConfig message.

Defaults: quant_type i2_s, group_size 32, sym true, per_channel false, quant_embd false. Which
combinations a type honours is the quantizer plugin's to say (Configure / CanQuantize answer with the
reason); `quantize_model` asks before it writes anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritium.protos.tritium.plugin.v1 import common_pb2

from .errors import QuantizeError

# CLI name -> QuantType enum (any QuantType a third-party plugin produces can be named the same way).
QUANT_TYPES = {name[len("QUANT_TYPE_"):].lower(): value for name, value in common_pb2.QuantType.items()
               if value != common_pb2.QUANT_TYPE_UNSPECIFIED}
# QuantType enum -> GGUF (ggml) tensor type name.
GGML_TYPE_OF = {common_pb2.QUANT_TYPE_I2_S: "I2_S", common_pb2.QUANT_TYPE_TL1: "TL1",
                common_pb2.QUANT_TYPE_TQ1_0: "TQ1_0", common_pb2.QUANT_TYPE_TQ2_0: "TQ2_0",
                common_pb2.QUANT_TYPE_F16: "F16", common_pb2.QUANT_TYPE_BF16: "BF16",
                common_pb2.QUANT_TYPE_F32: "F32", common_pb2.QUANT_TYPE_Q8_0: "Q8_0"}


@dataclass(frozen=True)
class QuantizeOptions:
    """What the user asked for."""

    quant_type: str = "i2_s"
    group_size: int = 32
    sym: bool = True
    per_channel: bool = False
    quant_embd: bool = False

    def __post_init__(self) -> None:
        if self.quant_type not in QUANT_TYPES:
            raise QuantizeError(f"--quant-type {self.quant_type!r} is not a known type (known: "
                                f"{', '.join(QUANT_TYPES)})")
        if self.group_size <= 0:
            raise QuantizeError(f"--group-size must be > 0, found {self.group_size}")

    @property
    def quant_type_enum(self) -> int:
        return QUANT_TYPES[self.quant_type]

    @property
    def ggml_type(self) -> str:
        return GGML_TYPE_OF.get(self.quant_type_enum, self.quant_type.upper())

    def message(self) -> common_pb2.QuantizerConfig:
        """The QuantizerConfig carrying these options (every field set)."""
        return common_pb2.QuantizerConfig(quant_type=self.quant_type_enum, group_size=self.group_size,
                                          sym=self.sym, per_channel=self.per_channel,
                                          quant_embd=self.quant_embd)

    def as_dict(self) -> dict[str, object]:
        return {"quant_type": self.quant_type, "group_size": self.group_size, "sym": self.sym,
                "per_channel": self.per_channel, "quant_embd": self.quant_embd}
