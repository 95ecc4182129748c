"""Errors of the quantize command."""

from tritium.core.errors import TritiumError


class QuantizeError(TritiumError):
    """The conversion cannot be done as asked: bad options, a bad source, a failed write. The message
    names the file, tensor or option at fault and what was expected."""
