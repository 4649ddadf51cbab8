"""The OpenAI-compatible server: `openmind serve`, or `create_app(model, processor, ServeSettings(...))`."""

from .app import ServeSettings, create_app, load_model
from .background import BackgroundServer

__all__ = ["ServeSettings", "create_app", "load_model", "BackgroundServer"]
