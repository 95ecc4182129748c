"""The engine: one generation from prompt to streamed text (`generate`), stop strings, timings."""

from tritium.core.engine.generate import GenerationChunk, GenerationStats, generate

__all__ = ["GenerationChunk", "GenerationStats", "generate"]
