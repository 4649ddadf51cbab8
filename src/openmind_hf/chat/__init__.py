"""A Gradio web chat for OpenMind: `openmind chat --model DIR` or `openmind chat --endpoint URL`.

Both modes talk to an OpenAI-compatible `/v1/chat/completions` with streaming. With `--model`, that server is
`openmind serve`'s own app (`serving.create_app`) started in-process on a loopback port with a random key, so the
chat runs exactly the server's generation engine, limits and media decoding (one generation stack).
Exports are imported on first use, so `openmind chat --help` does not pay for Gradio.
"""

from importlib import import_module

_EXPORTS = {
    "ChatBackend": ".backend",
    "ChatBackendError": ".backend",
    "ModelCard": ".backend",
    "UploadLimits": ".uploads",
    "UploadError": ".uploads",
    "build_chat_app": ".app",
    "launch_chat_app": ".app",
    "LocalModelServer": ".local",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
