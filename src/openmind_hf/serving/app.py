"""The FastAPI application: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`.

    from openmind_hf.serving import ServeSettings, create_app
    app = create_app(model, processor, ServeSettings(model_name="openmind-tiny", api_key="..."))
    # then: uvicorn.run(app, host="127.0.0.1", port=8000)

`app_from_environment` builds the same app inside each uvicorn worker process when `openmind serve --workers N`
runs more than one (uvicorn needs an import string then, so the settings travel as JSON in the environment).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field

from fastapi import FastAPI
from PIL import Image
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from .completions import ChatCompletions, CompletionLimits
from .conversation import PromptBuilder, PromptLimits
from .engine import GenerationEngine
from .errors import APIError
from .fetch import MediaFetcher, normalise_domains
from .guard import GuardCounters, RequestGuard
from .media import MediaLimits

logger = logging.getLogger("openmind_hf.serving")
SETTINGS_ENV = "OPENMIND_SERVE_SETTINGS"
CHAT_PATH = "/v1/chat/completions"


@dataclass
class ServeSettings:
    r"""
    Everything `openmind serve` can configure besides the model itself.

    Args:
        model_name (`str`): the id clients pass as `model` and `/v1/models` lists.
        model_path (`str`, *optional*): checkpoint to load (used by `app_from_environment`).
        api_key (`str`, *optional*): required on every route but `/health`; `None` disables the check.
        max_concurrent (`int`, *optional*, defaults to 8): chat requests in flight; more get 429.
        max_tokens_cap (`int`, *optional*, defaults to 1024): the largest `max_tokens` accepted.
        request_timeout_s (`float`, *optional*, defaults to 120): per-request wall-clock limit.
        max_body_bytes (`int`, *optional*, defaults to 20 MiB): request body limit.
        max_images (`int`, *optional*, defaults to 4): images per request.
        max_audios (`int`, *optional*, defaults to 2): audio clips per request.
        max_pixels (`int`, *optional*, defaults to 3840 * 2160): pixels per image or video frame, checked before decoding.
        max_audio_seconds (`float`, *optional*, defaults to 30): seconds per clip (never more than the model hears).
        allowed_media_domains (`list[str]`, *optional*): domains image URLs may be fetched from; empty = no fetching.
        media_fetch_timeout_s (`float`, *optional*, defaults to 10): limit per fetched URL.
        media_fetch_max_bytes (`int`, *optional*, defaults to 10 MiB): size limit per fetched URL.
        generation_workers (`int`, *optional*, defaults to 2): concurrent `generate` calls.
        max_batch_size (`int`, *optional*, defaults to 8): requests batched into one `generate` call.
        header_timeout_s (`float`, *optional*, defaults to 10): a connection that has not sent a complete request
            head this long after connecting (or after its previous response) is closed. Applied by the HTTP
            protocol (`serving.protocol`), so it takes effect through `BackgroundServer` / `openmind serve`.
        body_timeout_s (`float`, *optional*, defaults to 10): the whole chat request body must arrive within this
            (and within `request_timeout_s`), or the answer is 408. The body is read before a concurrency slot
            is taken, so slow clients hold connections, never generation slots.
        dtype (`str`, *optional*, defaults to `"auto"`), device (`str`, *optional*): how `app_from_environment` loads.
        allow_pickled_weights (`bool`, *optional*, defaults to `False`): also load pickled (`.bin`) weights.
    """

    model_name: str
    model_path: str | None = None
    api_key: str | None = None
    max_concurrent: int = 8
    max_tokens_cap: int = 1024
    request_timeout_s: float = 120.0
    max_body_bytes: int = 20 * 1024 * 1024
    max_images: int = 4
    max_audios: int = 2
    max_pixels: int = 3840 * 2160
    max_audio_seconds: float = 30.0
    allowed_media_domains: list[str] = field(default_factory=list)
    media_fetch_timeout_s: float = 10.0
    media_fetch_max_bytes: int = 10 * 1024 * 1024
    generation_workers: int = 2
    max_batch_size: int = 8
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    dtype: str = "auto"
    device: str | None = None
    allow_pickled_weights: bool = False

    def __post_init__(self):
        for name in ("max_concurrent", "max_tokens_cap", "max_body_bytes", "max_pixels", "generation_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServeSettings.{name} must be >= 1, got {getattr(self, name)}.")
        if self.max_images < 0 or self.max_audios < 0 or self.request_timeout_s <= 0:
            raise ValueError("ServeSettings: max_images/max_audios must be >= 0 and request_timeout_s > 0.")
        if self.header_timeout_s <= 0 or self.body_timeout_s <= 0:
            raise ValueError("ServeSettings: header_timeout_s and body_timeout_s must be > 0.")
        self.allowed_media_domains = list(normalise_domains(self.allowed_media_domains))


def context_length(model, tokenizer) -> int:
    """Prompt + completion tokens the model attends to: the text model's positions, bounded by the tokenizer's."""
    limits = [getattr(model.config.get_text_config(), "max_position_embeddings", None)]
    limits.append(getattr(tokenizer, "model_max_length", None))
    sane = [int(x) for x in limits if isinstance(x, int) and 0 < x < 10**8]
    if not sane:
        raise ValueError("Cannot tell the model's context length: set max_position_embeddings in its text config.")
    return min(sane)


class _PixelLimits:
    """`Image.MAX_IMAGE_PIXELS` while apps run: the smallest running app's limit; PIL's own value when none runs."""

    def __init__(self):
        self._lock, self._running, self._pil_value = threading.Lock(), [], None

    def start(self, max_pixels: int) -> None:
        with self._lock:
            if not self._running:
                self._pil_value = Image.MAX_IMAGE_PIXELS
            self._running.append(max_pixels)
            Image.MAX_IMAGE_PIXELS = min(self._running)

    def stop(self, max_pixels: int) -> None:
        with self._lock:
            self._running.remove(max_pixels)
            Image.MAX_IMAGE_PIXELS = min(self._running) if self._running else self._pil_value


_PIXEL_LIMITS = _PixelLimits()


def create_app(model, processor, settings: ServeSettings) -> FastAPI:
    """The server for one loaded `model` and its `processor`. Generation runs on `settings.generation_workers`
    threads started here and stopped at the app's shutdown; PIL's pixel limit is set while the app runs."""
    tokenizer = processor.tokenizer
    fetcher = None
    if settings.allowed_media_domains:
        fetcher = MediaFetcher(
            settings.allowed_media_domains, settings.media_fetch_max_bytes, settings.media_fetch_timeout_s
        )
    media = MediaLimits(max_pixels=settings.max_pixels, max_audio_seconds=settings.max_audio_seconds)
    builder = PromptBuilder(processor, PromptLimits(settings.max_images, settings.max_audios, media), fetcher)
    engine = GenerationEngine(model, tokenizer, settings.generation_workers, settings.max_batch_size)
    limits = CompletionLimits(
        max_tokens_cap=settings.max_tokens_cap,
        request_timeout_s=settings.request_timeout_s,
        max_body_bytes=settings.max_body_bytes,
        context_length=context_length(model, tokenizer),
    )
    chat = ChatCompletions(settings.model_name, builder, engine, limits)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app):
        # PIL's own bomb limit, process-wide, as a backstop (`decode_image` checks the header itself first). Apps may
        # start and stop in any order (tests, the web chat's in-process server): the limit is the smallest of the
        # running apps', and PIL's own value comes back when the last one stops.
        _PIXEL_LIMITS.start(settings.max_pixels)
        try:
            yield
        finally:
            _PIXEL_LIMITS.stop(settings.max_pixels)
            engine.shutdown()

    app = FastAPI(title="OpenMind", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.engine, app.state.settings, app.state.counters = engine, settings, GuardCounters()

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        card = {"id": settings.model_name, "object": "model", "created": created, "owned_by": "openmind"}
        return {"object": "list", "data": [card]}

    @app.post(CHAT_PATH)
    async def chat_completions(request: Request):
        return await chat(request)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        message = {404: "Not found.", 405: "Method not allowed."}.get(exc.status_code, "Request refused.")
        return JSONResponse(APIError(exc.status_code, message).body(), status_code=exc.status_code)

    app.add_middleware(
        RequestGuard,
        api_key=settings.api_key,
        max_body_bytes=settings.max_body_bytes,
        max_concurrent=settings.max_concurrent,
        limited_paths=[CHAT_PATH],
        body_timeout_s=min(settings.body_timeout_s, settings.request_timeout_s),
        counters=app.state.counters,
    )
    return app


def load_model(path: str, dtype: str = "auto", device: str | None = None, allow_pickled_weights: bool = False):
    """Model + `AutoProcessor` from a local directory or Hub id, ready for generation. Plain and quantized
    checkpoints (torchao, bitsandbytes, optimum-quanto) all load, through `openmind_hf.building.inference`."""
    from transformers import AutoProcessor

    from ..building.inference import load_model_for_inference

    model = load_model_for_inference(path, dtype=dtype, device=device, allow_pickled_weights=allow_pickled_weights)
    processor = AutoProcessor.from_pretrained(path)
    processor.tokenizer.padding_side = "left"
    return model.eval(), processor


def settings_to_environment(settings: ServeSettings) -> str:
    return json.dumps(asdict(settings))


def app_from_environment() -> FastAPI:
    """uvicorn factory for multi-worker serving: settings from `$OPENMIND_SERVE_SETTINGS`, model loaded per worker."""
    settings = ServeSettings(**json.loads(os.environ[SETTINGS_ENV]))
    model, processor = load_model(
        settings.model_path, settings.dtype, settings.device, allow_pickled_weights=settings.allow_pickled_weights
    )
    return create_app(model, processor, settings)


__all__ = [
    "ServeSettings",
    "create_app",
    "load_model",
    "context_length",
    "app_from_environment",
    "settings_to_environment",
    "SETTINGS_ENV",
]
