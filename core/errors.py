"""Error types of the engine. Messages name the file, tensor or field at fault and what was expected."""


class TritiumError(Exception):
    """Base class of every error Tritium raises on purpose."""


class ModelFormatError(TritiumError):
    """A model file or folder is malformed, truncated, inconsistent with its config, or unsupported."""


class TokenizerError(TritiumError):
    """The tokenizer metadata is missing or malformed, or text cannot be encoded/decoded."""


class SamplingError(TritiumError):
    """Invalid sampling parameters (e.g. negative temperature, top_p outside (0, 1])."""


class ContextOverflowError(TritiumError):
    """A prompt plus requested tokens does not fit the model's context window."""
