"""A continuation's wire forms (backend.proto ContinuationSampling, Pcg64State, TokenLogprobs).

Host and backend both continue one numpy Generator(PCG64): the host sends its generator's state with
the request, the backend draws from a copy and returns the state after its last draw, and the host
sets its generator to it. The draws are then exactly those one generator would have made. The part of
the history the penalties read travels with it, and the logprobs come back per chosen token.
"""

from __future__ import annotations

import numpy as np
from tritium.core.errors import SamplingError
from tritium.core.sampling.params import SamplingParams
from tritium.core.sampling.sampler import Continuation, SampledToken, Sampler
from tritium.protos.tritium.plugin.v1 import backend_pb2

_MASK64 = (1 << 64) - 1
_NEVER_DRAWN = np.random.Generator(np.random.PCG64(0))


def rng_state(rng: np.random.Generator) -> backend_pb2.Pcg64State:
    """The message of a PCG64 generator's state; ValueError for any other bit generator."""
    st = rng.bit_generator.state
    if st.get("bit_generator") != "PCG64":
        raise ValueError(f"a sampled continuation needs a PCG64 generator, not {st.get('bit_generator')}")
    s, inc = st["state"]["state"], st["state"]["inc"]
    return backend_pb2.Pcg64State(state_high=s >> 64, state_low=s & _MASK64, inc_high=inc >> 64,
                                  inc_low=inc & _MASK64, has_uint32=bool(st["has_uint32"]),
                                  uinteger=st["uinteger"])


def set_rng_state(rng: np.random.Generator, msg: backend_pb2.Pcg64State) -> None:
    """Set a PCG64 generator to the state of `msg`."""
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": (msg.state_high << 64) | msg.state_low, "inc": (msg.inc_high << 64) | msg.inc_low},
        "has_uint32": int(msg.has_uint32),
        "uinteger": msg.uinteger,
    }


def generator_from(msg: backend_pb2.Pcg64State) -> np.random.Generator:
    """A new Generator(PCG64) in the state of `msg`."""
    rng = np.random.Generator(np.random.PCG64())
    set_rng_state(rng, msg)
    return rng


def continuation_sampling(c: Continuation) -> backend_pb2.ContinuationSampling:
    """The request form of a continuation (the generator's state only when it will draw)."""
    p = c.params
    msg = backend_pb2.ContinuationSampling(
        temperature=p.temperature, top_k=p.top_k, top_p=p.top_p, min_p=p.min_p,
        repetition_penalty=p.repetition_penalty, penalty_last_n=p.penalty_last_n,
        frequency_penalty=p.frequency_penalty, presence_penalty=p.presence_penalty,
        prompt_tail=c.prompt_tail, generated=c.generated, logprobs=p.logprobs,
    )
    if not p.greedy:
        msg.rng.CopyFrom(rng_state(c.rng))
    return msg


def sampler_of(msg: backend_pb2.ContinuationSampling) -> tuple[Sampler, list[int], int]:
    """The backend's side: a Sampler for `msg` (its generator continued from `msg.rng`), the history
    its penalties read, and that history's prompt length. SamplingError names a bad field."""
    params = SamplingParams(
        temperature=msg.temperature, top_k=msg.top_k, top_p=msg.top_p, min_p=msg.min_p,
        repetition_penalty=msg.repetition_penalty, penalty_last_n=msg.penalty_last_n,
        frequency_penalty=msg.frequency_penalty, presence_penalty=msg.presence_penalty,
        logprobs=msg.logprobs if msg.HasField("logprobs") else None,
    ).validate()
    if not params.greedy and not msg.HasField("rng"):
        raise SamplingError("rng: a temperature > 0 needs the generator state")
    # A greedy sampler never draws: it gets a fixed generator, not one seeded from OS entropy (~30 µs).
    rng = _NEVER_DRAWN if params.greedy else generator_from(msg.rng)
    return Sampler(params, rng), list(msg.prompt_tail) + list(msg.generated), len(msg.prompt_tail)


def logprobs_message(choice: SampledToken) -> backend_pb2.TokenLogprobs:
    """The answer form of a chosen token's log-probabilities."""
    return backend_pb2.TokenLogprobs(logprob=choice.logprob, top_ids=[i for i, _ in choice.top_logprobs],
                                     top_logprobs=[lp for _, lp in choice.top_logprobs])


def sampled_token(token: int, msg: backend_pb2.TokenLogprobs) -> SampledToken:
    """The host's form of a continuation token and its log-probabilities."""
    return SampledToken(token, msg.logprob, list(zip(msg.top_ids, msg.top_logprobs, strict=True)))
