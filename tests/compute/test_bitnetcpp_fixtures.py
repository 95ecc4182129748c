"""Tritium vs bitnet.cpp's own logits and greedy text on the I2_S fixtures (tests/fixtures/bitnetcpp).

The bar (issue #3): cosine >= 0.999 at every position, equal argmax wherever bitnet.cpp's top-2 margin
exceeds 0.1, and the 32 greedy ids equal to bitnet.cpp's. With the fp16 emulation (kv_dtype "f16")
the logits also agree to ~1e-6 at most positions (median of the per-position max |diff|).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tritium.core.compute import Runtime
from tritium.core.compute.reference import reference_forward
from tritium.core.model.loader import load_model

from tests.conftest import BITNETCPP_FIXTURES

NAMES = ["bitnet-b158-tiny", "bitnet-gqa-tiny"]
N_PROMPT = 33


def fixture(name: str, what: str) -> np.ndarray:
    return np.load(BITNETCPP_FIXTURES / f"{name}.{what}.npy")


@pytest.fixture(scope="module", params=NAMES)
def model(request: pytest.FixtureRequest):
    name = request.param
    return name, load_model(BITNETCPP_FIXTURES / f"{name}.i2_s.gguf")


def check(ours: np.ndarray, peer: np.ndarray, median_max: float) -> None:
    cos = (ours * peer).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(peer, axis=1)
    assert cos.min() >= 0.999, f"min cosine {cos.min()}"
    top2 = np.sort(peer, axis=1)[:, -2:]
    sure = top2[:, 1] - top2[:, 0] > 0.1
    assert np.array_equal(ours.argmax(1)[sure], peer.argmax(1)[sure])
    assert np.median(np.abs(ours - peer).max(1)) <= median_max


def test_loaded_as_bitnetcpp_computes(model) -> None:
    _, m = model
    assert m.config.act_quant == "i8_s"


def run_all(m, name: str, kv: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ours, bitnet.cpp) logits for the batch, random and incremental (as llama-cli) evaluations."""
    rt = Runtime(m.config, m.weights, threads=1, kv_dtype=kv)
    tokens = fixture(name, "prompt_greedy.tokens")
    seq = rt.new_sequence()
    inc = [rt.eval(seq, tokens[:N_PROMPT], all_logits=True)] + [rt.eval(seq, [t]) for t in tokens[N_PROMPT:]]
    return [
        (rt.eval(rt.new_sequence(), tokens, all_logits=True), fixture(name, "prompt_greedy.logits_batch")),
        (rt.eval(rt.new_sequence(), fixture(name, "random.tokens"), all_logits=True),
         fixture(name, "random.logits")),
        (np.concatenate(inc), fixture(name, "prompt_greedy.logits")),
    ]


def test_runtime_meets_the_bar_with_fp16_emulation(model) -> None:
    # most positions agree to ~1e-6; one int8 rounding flip in b158's batch run moves the later
    # positions by up to 0.2, hence the 1e-3 bound on the median of the per-position max |diff|
    name, m = model
    for ours, peer in run_all(m, name, "f16"):
        check(ours, peer, 1e-3)


def test_runtime_without_fp16_emulation_keeps_the_argmax(model) -> None:
    """With an f32 KV cache (no fp16 rounding) the logits move by ~1e-2 (min cosine ~0.9989, just
    under the bar): the fp16 emulation is what the 0.999 bar needs, the argmax holds either way."""
    name, m = model
    for ours, peer in run_all(m, name, "f32"):
        cos = (ours * peer).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(peer, axis=1)
        assert cos.min() >= 0.998
        top2 = np.sort(peer, axis=1)[:, -2:]
        sure = top2[:, 1] - top2[:, 0] > 0.1
        assert np.array_equal(ours.argmax(1)[sure], peer.argmax(1)[sure])


@pytest.mark.parametrize("kv", ["f16", "f32"])
def test_greedy_ids_equal_bitnetcpp(model, kv: str) -> None:
    name, m = model
    ref = json.loads((BITNETCPP_FIXTURES / f"{name}.ref.json").read_text())
    rt = Runtime(m.config, m.weights, threads=1, kv_dtype=kv)
    seq = rt.new_sequence()
    logits = rt.eval(seq, ref["prompt_token_ids"])
    out = []
    for _ in range(len(ref["greedy_token_ids"])):
        out.append(int(np.argmax(logits[-1])))
        logits = rt.eval(seq, [out[-1]])
    assert out == ref["greedy_token_ids"]


def test_reference_float64_reproduces_bitnetcpp(model) -> None:
    """The numpy reference with the fp16 emulation is as close as the fixture README's own check."""
    name, m = model
    tokens = fixture(name, "prompt_greedy.tokens")
    ours = reference_forward(m.config, m.weights, tokens, kv_dtype="f16", precision="float64",
                             batch_sizes=[N_PROMPT] + [1] * (len(tokens) - N_PROMPT))
    peer = fixture(name, "prompt_greedy.logits")
    check(ours, peer, 1e-5)
    assert np.abs(ours - peer).max() < 1e-3
