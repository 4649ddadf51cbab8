"""`openmind chat`: the web chat, for a local checkpoint or any OpenAI-compatible endpoint.

    openmind chat --model outputs/tiny                               # http://127.0.0.1:7860, this machine only
    openmind chat --endpoint http://127.0.0.1:8000/v1 --api-key-env OPENMIND_API_KEY
    openmind chat --model DIR --auth "alice:$(cat password.txt)" --host 0.0.0.0

With `--model`, the checkpoint is served in-process by `openmind serve`'s own app (same engine, limits and media
decoding) on a random loopback port, and the page talks to it.

Videos go as `video_url` parts, heard when the page's "Hear the video's sound" box is ticked, to OpenMind servers
(`--model`, or an `--endpoint` whose `/v1/models` says `owned_by: "openmind"`). Other endpoints (vLLM, OpenAI) get
a few PNG frames per video instead and never hear it; `--video-as` overrides the choice.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..serving.commands import is_loopback, served_model_name  # the same rules as `openmind serve`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="checkpoint directory or Hub id, served in-process (quantized ones too)")
    source.add_argument("--endpoint", help="an OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", help="the endpoint's key (visible in `ps`: prefer --api-key-env)")
    parser.add_argument("--api-key-env", default="OPENMIND_API_KEY", help="environment variable holding the key")
    parser.add_argument("--served-model-name", help="model id (default: the directory name / the endpoint's first)")
    page = parser.add_argument_group("the page")
    page.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    page.add_argument("--port", type=int, default=7860)
    page.add_argument("--auth", help="USER:PASSWORD the page asks for (required for a non-loopback --host)")
    page.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    page.add_argument("--concurrency", type=int, default=4, help="answers streamed at once; more wait in a queue")
    limits = parser.add_argument_group("limits (with --model they are the in-process server's too)")
    limits.add_argument("--max-upload-mb", type=float, default=10.0, help="size per uploaded file")
    limits.add_argument(
        "--max-pixels", type=int, default=3840 * 2160, help="pixels per image or video frame, checked pre-decode"
    )
    limits.add_argument("--max-audio-seconds", type=float, default=30.0, help="seconds per audio clip")
    limits.add_argument(
        "--max-images",
        type=int,
        default=4,
        help="images per request (a video counts as one; sent as frames, one per frame)",
    )
    limits.add_argument(
        "--max-audios", type=int, default=2, help="audio clips per request (a heard video counts as one)"
    )
    limits.add_argument("--max-tokens-cap", type=int, default=1024, help="the max-tokens slider's upper end")
    limits.add_argument("--video-frames", type=int, default=4, help="frames sent per video with --video-as frames")
    limits.add_argument(
        "--video-as",
        choices=["auto", "video_url", "frames"],
        default="auto",
        help="video_url: sampled (and heard) by the server; frames: PNG frames, no sound (servers without videos). "
        "auto: video_url for OpenMind servers, frames otherwise",
    )
    limits.add_argument("--request-timeout", type=float, default=300.0, help="seconds per answer")
    engine = parser.add_argument_group("local model (--model)")
    engine.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    engine.add_argument("--device", help="e.g. cpu or cuda (default: where from_pretrained puts it)")


def parse_auth(args) -> tuple[str, str] | None:
    """`--auth USER:PASSWORD` -> (user, password); a non-loopback bind or `--share` without it is refused."""
    if args.auth is None:
        if not is_loopback(args.host) or args.share:
            raise ValueError("the page would be reachable from other machines: pass --auth USER:PASSWORD.")
        return None
    user, sep, password = args.auth.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth must be USER:PASSWORD, both non-empty.")
    return user, password


def serve_settings(args, name: str):
    from ..serving import ServeSettings

    return ServeSettings(
        model_name=name,
        model_path=args.model,
        max_tokens_cap=args.max_tokens_cap,
        request_timeout_s=args.request_timeout,
        max_images=args.max_images,
        max_audios=args.max_audios,
        max_pixels=args.max_pixels,
        max_audio_seconds=args.max_audio_seconds,
        # each request re-sends the conversation's media, base64 (x4/3): a whole video per upload now, not frames
        max_body_bytes=max(
            20 * 2**20, (int(args.max_upload_mb * 2**20) // 3 + 1) * 4 * (args.max_images + args.max_audios)
        ),
        max_concurrent=max(args.concurrency, 1),
        dtype=args.dtype,
        device=args.device,
    )


def run(args) -> int:
    from .app import build_chat_app, launch_chat_app
    from .backend import ChatBackend, ChatBackendError
    from .uploads import UploadLimits

    try:
        auth = parse_auth(args)
    except ValueError as err:
        print(f"openmind chat: {err}", file=sys.stderr)
        return 2
    max_bytes = int(args.max_upload_mb * 2**20)
    limits = UploadLimits(max_upload_bytes=max_bytes, video_frames=min(args.video_frames, args.max_images))
    local = None
    try:
        if args.model:
            from .local import LocalModelServer

            name = served_model_name(args)
            local = LocalModelServer.from_pretrained(args.model, serve_settings(args, name), args.dtype, args.device)
            backend, card = local.start(), local.card
        else:
            key = args.api_key or os.environ.get(args.api_key_env)
            backend = ChatBackend(args.endpoint, key, args.served_model_name, timeout=args.request_timeout)
            card = None
    except (OSError, ValueError, ChatBackendError) as err:
        print(f"openmind chat: could not start with {args.model or args.endpoint!r}: {err}", file=sys.stderr)
        return 1
    try:
        video_as = args.video_as
        if video_as == "auto":
            video_as = "video_url" if local is not None or backend.accepts_video_url() else "frames"
        demo = build_chat_app(backend, card, limits, max_tokens_cap=args.max_tokens_cap, video_as=video_as)
        print(
            f"openmind chat: http://{args.host}:{args.port}  (model {backend.model}, videos as {video_as})", flush=True
        )
        launch_chat_app(
            demo, args.host, args.port, auth, max_bytes, share=args.share, block=True, concurrency=args.concurrency
        )
    finally:
        if local is not None:
            local.stop()
    return 0


__all__ = ["add_arguments", "run", "parse_auth"]
