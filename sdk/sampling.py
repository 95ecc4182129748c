"""The sampled continuation's wire forms (backend.proto ContinuationSampling, Pcg64State).

Host and backend both continue one numpy Generator(PCG64): the host sends its generator's state with
the request, the backend draws from a copy and returns the state after its last draw, and the host
sets its generator to it. The draws are then exactly those one generator would have made.
"""

from __future__ import annotations

import numpy as np
from tritium.core.sampling.params import SamplingParams
from tritium.protos.tritium.plugin.v1 import backend_pb2

_MASK64 = (1 << 64) - 1


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


def continuation_sampling(
    params: SamplingParams, rng: np.random.Generator
) -> backend_pb2.ContinuationSampling:
    """The request form of a (non-greedy, penalty-free) sampler and its generator."""
    return backend_pb2.ContinuationSampling(temperature=params.temperature, top_k=params.top_k,
                                            top_p=params.top_p, min_p=params.min_p, rng=rng_state(rng))


def params_of(msg: backend_pb2.ContinuationSampling) -> SamplingParams:
    """The SamplingParams of a request's ContinuationSampling; SamplingError naming a bad field."""
    return SamplingParams(temperature=msg.temperature, top_k=msg.top_k, top_p=msg.top_p,
                          min_p=msg.min_p).validate()
