"""Serving: the continuous-batching engine loop and the OpenAI-compatible HTTP API over it.

`ServingEngine` (engine_loop.py) runs one engine thread; `create_app` (openai_api.py) is the FastAPI
application; `serve` (server.py) is what `tritium serve` runs.
"""

from tritium.core.serving.engine_loop import ServingEngine
from tritium.core.serving.errors import EngineStoppedError, QueueFullError
from tritium.core.serving.request_stream import RequestHandle, RequestOutput
from tritium.core.serving.scheduling import InCorePolicy, ScheduleDecision, SchedulePolicy, ScheduleSnapshot
from tritium.core.serving.serving_config import ServingConfig, load_serving_config

__all__ = [
    "EngineStoppedError",
    "InCorePolicy",
    "QueueFullError",
    "RequestHandle",
    "RequestOutput",
    "ScheduleDecision",
    "SchedulePolicy",
    "ScheduleSnapshot",
    "ServingConfig",
    "ServingEngine",
    "load_serving_config",
]
