"""The Gradio page: a multimodal input (image, audio file, microphone, video), streamed answers with the reasoning
in its own collapsible "Thinking" block, a thinking switch and budget, temperature, max tokens, retry and clear.

A video goes to the server as a `video_url` part and, with "Hear the video's sound" ticked, is heard too (frames then
its audio, as in training). Attaching a video sets that box from the file itself (`probe_video`: on when it has an
audio stream). A silent video that is to be heard gets the server's error, unless "Silence when a video has no
sound" is ticked. Against servers that take no `video_url` (`video_as="frames"`: vLLM, OpenAI), a video goes as
a few PNG frames and both boxes are hidden: its sound cannot be heard there.

    backend = ChatBackend("http://127.0.0.1:8000/v1", api_key="...")
    demo = build_chat_app(backend, ModelCard(backend.model))
    launch_chat_app(demo, port=7860)

The conversation lives in a per-session `gr.State` of turns; each request re-sends the whole conversation
(OpenAI's API is stateless). A turn that failed stays on the page with its error but is never sent again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .backend import ChatBackend, ChatBackendError, ModelCard
from .uploads import VIDEO_TYPES, UploadError, UploadLimits, VideoOptions, media_parts, read_upload, video_header

# Nothing may leave the machine: no usage analytics, version checks or Hub telemetry from Gradio.
QUIET_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_SSR_MODE": "False"}
# System fonts: Gradio's default theme would fetch Inter from Google Fonts.
SANS = ["ui-sans-serif", "system-ui", "sans-serif"]
MONO = ["ui-monospace", "monospace"]
THINKING_TITLE = "Thinking"
ERROR_PREFIX = "⚠️ Error: "  # a plain message, not a collapsible block: an error must be seen without a click
HEAR_LABEL, SILENCE_LABEL = "Hear the video's sound", "Silence when a video has no sound (instead of an error)"


def _gradio():
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    import gradio as gr

    return gr


@dataclass(frozen=True)
class GenerationControls:
    """The page's settings for one request."""

    thinking: bool
    thinking_budget: int  # 0 = no limit
    temperature: float
    max_tokens: int
    hear_video: bool = True
    video_silence: bool = False


def api_messages(turns: list[dict]) -> list[dict]:
    """OpenAI messages for the conversation; failed turns are skipped, the last turn gets no assistant message."""
    messages = []
    for index, turn in enumerate(turns):
        if turn["error"]:
            continue
        messages.append({"role": "user", "content": turn["parts"]})
        if index < len(turns) - 1:
            messages.append({"role": "assistant", "content": turn["answer"]})
    return messages


def render(turns: list[dict], streaming: bool = False) -> list[dict]:
    """Chatbot messages for the turns: uploads, text, the reasoning block (collapsible), the answer, any error."""
    shown = []
    for index, turn in enumerate(turns):
        shown += [{"role": "user", "content": {"path": path}} for path in turn["files"]]
        if turn["text"]:
            shown.append({"role": "user", "content": turn["text"]})
        if turn["reasoning"]:
            pending = streaming and index == len(turns) - 1 and not turn["answer"]
            status = "pending" if pending else "done"
            metadata = {"title": THINKING_TITLE, "status": status}
            shown.append({"role": "assistant", "content": turn["reasoning"], "metadata": metadata})
        if turn["answer"]:
            shown.append({"role": "assistant", "content": turn["answer"]})
        if turn["error"]:
            shown.append({"role": "assistant", "content": ERROR_PREFIX + turn["error"]})
    return shown


class ChatSession:
    r"""
    The page's event handlers, independent of Gradio's widgets (so they read, and test, as plain generators).

    Args:
        backend (`ChatBackend`): where requests go.
        upload_root (`str`): Gradio's upload folder; no other file is ever read.
        limits (`UploadLimits`): per-upload limits checked before reading.
        video_as (`str`, *optional*, defaults to `"video_url"`): `"video_url"` (heard when asked) or `"frames"`.
    """

    def __init__(self, backend: ChatBackend, upload_root: str, limits: UploadLimits, video_as: str = "video_url"):
        if video_as not in ("video_url", "frames"):
            raise ValueError(f"video_as must be 'video_url' or 'frames', not {video_as!r}.")
        self.backend, self.upload_root, self.limits, self.video_as = backend, upload_root, limits, video_as

    def probe_videos(self, message: dict | None, probed: list[str]):
        """On a change of the input box: `(hear, probed, status)`. When the attached videos changed, `hear` is
        whether they all have an audio stream and `status` says so; otherwise both are `None` (leave the page's
        value, which the user may have changed)."""
        files = [f if isinstance(f, str) else f["path"] for f in (message or {}).get("files") or []]
        videos = sorted(f for f in files if Path(f).suffix.lower() in VIDEO_TYPES)
        if videos == probed or not videos:
            return None, videos, None
        silent = []
        for path in videos:
            try:
                data, name = read_upload(path, self.upload_root, self.limits)
                if not video_header(data, name, self.limits).has_audio:
                    silent.append(name)
            except UploadError as err:
                return None, videos, f"Error: {err}"
        if silent:
            note = f"{', '.join(silent)} has no audio track: sent without sound (tick “{HEAR_LABEL}” to hear it)."
            return False, videos, note
        return True, videos, "The video's sound will be heard."

    def send(self, message: dict | None, turns: list[dict], *controls):
        text = ((message or {}).get("text") or "").strip()
        files = [f if isinstance(f, str) else f["path"] for f in (message or {}).get("files") or []]
        if not text and not files:
            yield render(turns), turns, message, "Type a message or attach a file first."
            return
        yield from self._answer(turns, text, files, GenerationControls(*controls))

    def retry(self, turns: list[dict], *controls):
        if not turns:
            yield render(turns), turns, "Nothing to retry yet."
            return
        last = turns[-1]
        for shown, new_turns, _, status in self._answer(
            turns[:-1], last["text"], last["files"], GenerationControls(*controls)
        ):
            yield shown, new_turns, status

    def _answer(self, turns: list[dict], text: str, files: list[str], controls: GenerationControls):
        turn = {"text": text, "files": files, "parts": [], "reasoning": "", "answer": "", "error": None}
        turns = [*turns, turn]
        video = VideoOptions(self.video_as == "frames", controls.hear_video, controls.video_silence)
        try:
            turn["parts"] = [p for path in files for p in media_parts(path, self.upload_root, self.limits, video)]
        except UploadError as err:
            turn["error"] = str(err)
            yield render(turns), turns, None, f"Error: {err}"
            return
        if text:
            turn["parts"].append({"type": "text", "text": text})
        yield render(turns, streaming=True), turns, None, "Generating…"
        budget = controls.thinking_budget or None
        try:
            for kind, delta in self.backend.stream(
                api_messages(turns),
                thinking=controls.thinking,
                thinking_budget=budget,
                temperature=controls.temperature,
                max_tokens=int(controls.max_tokens),
            ):
                turn["reasoning" if kind == "reasoning" else "answer"] += delta
                yield render(turns, streaming=True), turns, None, "Generating…"
        except ChatBackendError as err:
            # The server numbers media per request ("messages[2] image 0"); the page's user knows file names.
            names = ", ".join(Path(path).name for path in files)
            turn["error"] = f"{err} (files sent with this message: {names})" if names else str(err)
            if "has no audio track" in str(err):  # the server's advice names API fields; the page has boxes
                turn["error"] += f" On this page: untick “{HEAR_LABEL}”, or tick “{SILENCE_LABEL}”."
            yield render(turns), turns, None, f"Error: {turn['error']}"
            return
        yield render(turns), turns, None, "Done."

    @staticmethod
    def clear():
        return [], [], None, ""


def build_chat_app(
    backend: ChatBackend,
    card: ModelCard | None = None,
    limits: UploadLimits | None = None,
    max_tokens_cap: int = 1024,
    title: str = "OpenMind chat",
    temperature: float = 0.7,
    video_as: str = "video_url",
):
    r"""
    The chat page as a `gr.Blocks` (not launched).

    Args:
        backend (`ChatBackend`): the OpenAI-compatible server the page talks to.
        card (`ModelCard`, *optional*): the model's name and towers (defaults to the backend's model id).
        limits (`UploadLimits`, *optional*): upload limits.
        max_tokens_cap (`int`, *optional*, defaults to 1024): the max-tokens slider's upper end.
        title (`str`, *optional*): the page title.
        temperature (`float`, *optional*, defaults to 0.7): the temperature slider's starting value.
        video_as (`str`, *optional*, defaults to `"video_url"`): how videos are sent: `"video_url"` (OpenMind's
            server: sampled there, and heard when asked) or `"frames"` (PNG frames, for servers without videos).
    """
    gr = _gradio()
    from gradio.utils import get_upload_folder

    card = card or ModelCard(backend.model, source=backend.base_url)
    session = ChatSession(backend, get_upload_folder(), limits or UploadLimits(), video_as)
    heard = video_as == "video_url"
    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(f"## {title}\n{card.markdown()}", elem_id="model-card")
        chatbot = gr.Chatbot(label="Conversation", height=460, elem_id="chatbot", buttons=["copy"])
        box = gr.MultimodalTextbox(
            file_types=["image", "audio", "video"],
            file_count="multiple",
            sources=["upload", "microphone"],
            placeholder="Ask about an image, an audio clip or a video, or just type…"
            + ("" if heard else " (videos go as a few frames: this server does not hear them)"),
            show_label=False,
            elem_id="chat-input",
        )
        status = gr.Markdown("", elem_id="chat-status")
        with gr.Row():
            retry = gr.Button("Retry", elem_id="retry", scale=0)
            clear = gr.Button("Clear", elem_id="clear", scale=0)
        with gr.Accordion("Generation", open=True):
            with gr.Row():
                thinking = gr.Checkbox(label="Thinking", value=False, elem_id="thinking")
                budget = gr.Slider(0, max_tokens_cap, value=0, step=1, label="Thinking budget (tokens, 0 = no limit)")
                temperature = gr.Slider(0.0, 2.0, value=temperature, step=0.05, label="Temperature")
                max_tokens = gr.Slider(1, max_tokens_cap, value=min(256, max_tokens_cap), step=1, label="Max tokens")
            with gr.Row(visible=heard):
                hear = gr.Checkbox(label=HEAR_LABEL, value=heard, elem_id="hear-video")
                silence = gr.Checkbox(label=SILENCE_LABEL, value=False, elem_id="video-silence")
        turns, probed = gr.State([]), gr.State([])
        controls = [thinking, budget, temperature, max_tokens, hear, silence]
        if heard:
            skip = lambda value: gr.skip() if value is None else value  # noqa: E731

            def probe(message, seen):
                on, seen, note = session.probe_videos(message, seen)
                return skip(on), seen, skip(note)

            # `change` also fires on typing: `probe_videos` reads headers only when the attached videos change, and
            # runs outside the queue so it never waits behind answers being generated.
            box.change(
                probe, [box, probed], [hear, probed, status], api_name="probe", show_progress="hidden", queue=False
            )
        box.submit(session.send, [box, turns, *controls], [chatbot, turns, box, status], api_name="send")
        retry.click(session.retry, [turns, *controls], [chatbot, turns, status], api_name="retry")
        clear.click(session.clear, None, [chatbot, turns, box, status], api_name="clear")
    return demo


def launch_chat_app(
    demo,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: tuple[str, str] | None = None,
    max_file_size: int = 10 * 1024 * 1024,
    share: bool = False,
    block: bool = True,
    concurrency: int = 4,
):
    r"""
    Serves the page. Returns `(app, local_url)`; with `block=True` (the CLI) it only returns when stopped.

    Args:
        demo (`gr.Blocks`): from `build_chat_app`.
        host (`str`, *optional*, defaults to `"127.0.0.1"`), port (`int`, *optional*, defaults to 7860): bind address.
        auth (`tuple[str, str]`, *optional*): a user and password the page asks for.
        max_file_size (`int`, *optional*, defaults to 10 MiB): Gradio refuses larger uploads.
        share (`bool`, *optional*, defaults to False): a public gradio.live link (off unless asked for).
        block (`bool`, *optional*, defaults to True): keep the main thread until interrupted.
        concurrency (`int`, *optional*, defaults to 4): requests streamed at once; more wait in Gradio's queue.
    """
    _gradio()
    demo.queue(default_concurrency_limit=concurrency)
    app, local_url, _ = demo.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        share=share,
        max_file_size=max_file_size,
        prevent_thread_lock=not block,
        ssr_mode=False,
        quiet=True,
        show_error=True,
        theme=_theme(),
    )
    return app, local_url


def _theme():
    gr = _gradio()
    return gr.themes.Default(font=SANS, font_mono=MONO)


__all__ = ["build_chat_app", "launch_chat_app", "ChatSession", "GenerationControls", "api_messages", "render"]
