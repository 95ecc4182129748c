"""Sampling: parameters of a request and the sampler that turns logits into token ids."""

from tritium.core.sampling.params import SamplingParams
from tritium.core.sampling.sampler import SampledToken, Sampler

__all__ = ["SampledToken", "Sampler", "SamplingParams"]
