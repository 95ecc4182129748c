"""What `quantize_model` needs from a quantizer, whether it runs in a plugin process (the product:
`PluginQuantizer`) or in-process (tests only). Plain Python so the orchestration does not depend on gRPC."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .options import QuantizeOptions


@dataclass(frozen=True)
class Verdict:
    """CanQuantize's answer for one tensor."""

    ok: bool
    type_name: str  # GGUF type it would get ("" when not ok)
    reason: str = ""


@dataclass
class QuantizedBytes:
    """One tensor as the quantizer returned it."""

    type_name: str
    data: np.ndarray  # uint8, 1-D: the GGUF tensor payload
    mse: float


class QuantizeSession(Protocol):
    """An open stream: one tensor in, one tensor out, in order. A session may also offer
    `buffer(shape) -> np.ndarray` (a float32 array the next tensor can be read into, so that `quantize`
    sends it without a copy); `quantize_model` uses it when present."""

    def quantize(self, name: str, x: np.ndarray) -> QuantizedBytes: ...


class Quantizer(Protocol):
    """A quantizer: configure once, ask per tensor, then stream tensors through a session."""

    name: str

    def configure(self, options: QuantizeOptions) -> list[str]:
        """Validate and apply options (QuantizeError with the plugin's reason); returns warnings."""
        ...

    def can_quantize(self, name: str, shape: tuple[int, ...]) -> Verdict: ...

    def session(self) -> AbstractContextManager[QuantizeSession]: ...
