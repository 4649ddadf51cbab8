"""`openmind serve`: an OpenAI-compatible HTTP server for a checkpoint.

    export OPENMIND_API_KEY=$(python -c "import secrets; print(secrets.token_urlsafe(32))")
    openmind serve --model outputs/tiny --port 8000                 # binds 127.0.0.1 by default
    openmind serve --model DIR --host 0.0.0.0 --workers 2 --max-concurrent 16 --allowed-media-domains example.com

With `--workers N > 1`, uvicorn runs N processes, each loading the model and enforcing its own limits
(`--max-concurrent` is per worker).
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger("openmind_hf.serving")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint directory or Hub id")
    parser.add_argument("--served-model-name", help="model id clients send (default: the directory name)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="server processes, each with its own model copy")
    parser.add_argument(
        "--worker-healthcheck-timeout",
        type=int,
        default=300,
        help="with --workers > 1: seconds a worker may take to answer uvicorn's liveness ping (model loading "
        "counts; uvicorn's default of 5 s kills workers that are still loading a model)",
    )
    key = parser.add_argument_group("authentication (a key is required unless --no-api-key)")
    key.add_argument("--api-key", help="the key clients must send (visible in `ps`: prefer --api-key-env)")
    key.add_argument("--api-key-env", default="OPENMIND_API_KEY", help="environment variable holding the key")
    key.add_argument("--no-api-key", action="store_true", help="serve without a key (loopback hosts only)")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-concurrent", type=int, default=8, help="chat requests in flight; more get 429")
    limits.add_argument("--max-tokens-cap", type=int, default=1024, help="largest max_tokens accepted")
    limits.add_argument("--request-timeout", type=float, default=120.0, help="seconds per request")
    limits.add_argument(
        "--header-timeout", type=float, default=10.0, help="seconds to send a request head, else the connection closes"
    )
    limits.add_argument(
        "--body-timeout", type=float, default=10.0, help="seconds to send a chat body (read before a slot is taken)"
    )
    limits.add_argument("--max-body-bytes", type=int, default=20 * 1024 * 1024)
    limits.add_argument("--max-images", type=int, default=4, help="images per request")
    limits.add_argument("--max-audios", type=int, default=2, help="audio clips per request")
    limits.add_argument(
        "--max-pixels", type=int, default=3840 * 2160, help="pixels per image or video frame, checked pre-decode"
    )
    limits.add_argument("--max-audio-seconds", type=float, default=30.0, help="seconds per audio clip")
    media = parser.add_argument_group("media URLs (off unless domains are given)")
    media.add_argument(
        "--allowed-media-domains",
        default="",
        help="comma-separated domains image URLs may be fetched from (http/https; private addresses always refused)",
    )
    media.add_argument("--media-fetch-timeout", type=float, default=10.0)
    media.add_argument("--media-fetch-max-bytes", type=int, default=10 * 1024 * 1024)
    engine = parser.add_argument_group("generation")
    engine.add_argument("--generation-workers", type=int, default=2, help="concurrent generate() calls per process")
    engine.add_argument("--max-batch-size", type=int, default=8, help="requests batched into one generate() call")
    engine.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    engine.add_argument("--device", help="e.g. cpu or cuda (default: where from_pretrained puts it)")
    engine.add_argument(
        "--allow-pickled-weights",
        action="store_true",
        help="also load a checkpoint whose weights are only pickled (pytorch_model.bin); unpickling can run code",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--engine",
        default="openmind",
        choices=["openmind", "vllm"],
        help="openmind: this server; vllm: exec `vllm serve` with OpenMind's flags (vLLM must be installed)",
    )


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (IPv4 or IPv6, bracketed or not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _api_key(args) -> str | None:
    key = args.api_key or os.environ.get(args.api_key_env) or None
    if key is None and not args.no_api_key:
        raise ValueError(
            f"no API key. Set ${args.api_key_env} (or pass --api-key-env NAME), "
            "or pass --no-api-key to serve without one on a loopback address."
        )
    if key is None and not is_loopback(args.host):
        raise ValueError(f"--no-api-key is only allowed on loopback hosts, not {args.host!r}.")
    return key


def served_model_name(args) -> str:
    """`--served-model-name`, else the model folder's name, else the Hub id (`openmind serve`, `serve --engine vllm`
    and `openmind chat` name the model alike)."""
    return args.served_model_name or (Path(args.model).name if Path(args.model).is_dir() else args.model)


def settings_from_args(args):
    """`ServeSettings` from parsed arguments; raises `ValueError` for a bad combination."""
    from .app import ServeSettings

    return ServeSettings(
        model_name=served_model_name(args),
        model_path=args.model,
        api_key=_api_key(args),
        max_concurrent=args.max_concurrent,
        max_tokens_cap=args.max_tokens_cap,
        request_timeout_s=args.request_timeout,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        max_body_bytes=args.max_body_bytes,
        max_images=args.max_images,
        max_audios=args.max_audios,
        max_pixels=args.max_pixels,
        max_audio_seconds=args.max_audio_seconds,
        allowed_media_domains=args.allowed_media_domains.split(","),
        media_fetch_timeout_s=args.media_fetch_timeout,
        media_fetch_max_bytes=args.media_fetch_max_bytes,
        generation_workers=args.generation_workers,
        max_batch_size=args.max_batch_size,
        dtype=args.dtype,
        device=args.device,
        allow_pickled_weights=args.allow_pickled_weights,
    )


def _log_config(level: str) -> dict:
    import uvicorn.config

    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["openmind_hf.serving"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def run(args) -> int:
    if args.engine == "vllm":  # vLLM's server instead of ours: serving/vllm_engine.py
        from .vllm_engine import run_vllm

        return run_vllm(args)
    import uvicorn

    from .app import SETTINGS_ENV, create_app, load_model, settings_to_environment
    from .protocol import HEADER_TIMEOUT_ENV, protocol_with_header_timeout

    try:
        settings = settings_from_args(args)
    except ValueError as err:
        print(f"openmind serve: {err}", file=sys.stderr)
        return 2
    common = {
        "host": args.host,
        "port": args.port,
        "log_config": _log_config(args.log_level),
        "log_level": args.log_level,
        "access_log": False,  # RequestGuard logs method, path (no query), status and time
        "timeout_keep_alive": 5,
        "http": protocol_with_header_timeout(settings.header_timeout_s),
    }
    if args.workers > 1:
        os.environ[SETTINGS_ENV] = settings_to_environment(settings)
        # Worker processes import the protocol class by name and read its deadline from the environment.
        os.environ[HEADER_TIMEOUT_ENV] = str(settings.header_timeout_s)
        common["http"] = "openmind_hf.serving.protocol:HeaderDeadlineH11Protocol"
        uvicorn.run(
            "openmind_hf.serving.app:app_from_environment",
            factory=True,
            workers=args.workers,
            timeout_worker_healthcheck=args.worker_healthcheck_timeout,
            **common,
        )
        return 0
    try:
        model, processor = load_model(args.model, args.dtype, args.device, settings.allow_pickled_weights)
    except (OSError, ValueError) as err:
        print(f"openmind serve: could not load {args.model!r}: {err}", file=sys.stderr)
        return 1
    uvicorn.run(create_app(model, processor, settings), **common)
    return 0


__all__ = ["add_arguments", "run", "settings_from_args"]
