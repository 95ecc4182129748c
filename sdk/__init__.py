"""What a plugin author imports: base classes, serve(), shared-memory tensors, the handshake.

from tritium.sdk import SchedulerPlugin, serve
class MyScheduler(SchedulerPlugin): ...
serve(MyScheduler(), "scheduler", "my_scheduler", "0.1.0")
"""

from .base import BackendPlugin, PluginBase, QuantizerPlugin, SchedulerPlugin
from .config import ConfigError
from .serve import serve

__all__ = ["BackendPlugin", "ConfigError", "PluginBase", "QuantizerPlugin", "SchedulerPlugin", "serve"]
