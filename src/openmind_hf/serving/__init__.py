"""The OpenAI-compatible server: `openmind serve`, or `create_app(model, processor, ServeSettings(...))`.

Exports are imported on first use, so `openmind serve --help` does not pay for FastAPI and the engine.
"""

from importlib import import_module

_EXPORTS = {
    "ServeSettings": ".app",
    "create_app": ".app",
    "load_model": ".app",
    "BackgroundServer": ".background",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
