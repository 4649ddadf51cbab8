"""The chat's only way to a model: a streaming client of an OpenAI-compatible `/v1/chat/completions`.

Ours (`openmind serve`, or the in-process server of `openmind chat --model`) sends the reasoning as
`delta.reasoning_content`; vLLM's newer releases send `delta.reasoning`. Both are read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


class ChatBackendError(RuntimeError):
    """The server refused or failed a request; the message is the server's own explanation."""


@dataclass
class ModelCard:
    r"""
    What the page shows about the model.

    Args:
        name (`str`): the model id requests carry.
        towers (`dict[str, str]`, *optional*): tower -> description, e.g. `{"vision": "siglip_vision_model"}`.
        source (`str`, *optional*): where the model lives (checkpoint directory or endpoint URL).
    """

    name: str
    towers: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def markdown(self) -> str:
        towers = ", ".join(f"{k}: `{v}`" for k, v in self.towers.items()) or "not reported by the endpoint"
        return f"**Model** `{self.name}` · **towers** {towers}" + (
            f" · **from** `{self.source}`" if self.source else ""
        )


class ChatBackend:
    r"""
    Streams chat completions from an OpenAI-compatible server.

    Args:
        base_url (`str`): the API root, e.g. `http://127.0.0.1:8000/v1` (a URL without `/v1` gets it appended).
        api_key (`str`, *optional*): sent as a bearer token; servers without keys accept any value.
        model (`str`, *optional*): the model id; defaults to the first one `/v1/models` lists.
        timeout (`float`, *optional*, defaults to 300): seconds per request.
    """

    def __init__(self, base_url: str, api_key: str | None = None, model: str | None = None, timeout: float = 300.0):
        import openai

        base_url = base_url.rstrip("/")
        if not base_url.endswith("/v1"):
            base_url += "/v1"
        self.base_url = base_url
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "none", max_retries=0, timeout=timeout)
        self.model = model or self._first_model()

    def _first_model(self) -> str:
        import openai

        try:
            models = self.client.models.list().data
        except openai.OpenAIError as err:
            raise ChatBackendError(f"could not list the models of {self.base_url}: {_message(err)}") from None
        if not models:
            raise ChatBackendError(f"{self.base_url}/models lists no model; pass --served-model-name.")
        return models[0].id

    def accepts_video_url(self) -> bool:
        """Whether the server is an OpenMind server (`/v1/models` says `owned_by: "openmind"`), whose `video_url`
        parts carry the video's sound; other OpenAI-compatible servers (vLLM, ...) get videos as frames."""
        import openai

        try:
            models = self.client.models.list().data
        except openai.OpenAIError:
            return False
        return any(m.id == self.model and getattr(m, "owned_by", None) == "openmind" for m in models)

    def stream(
        self,
        messages: list[dict],
        *,
        thinking: bool = False,
        thinking_budget: int | None = None,
        temperature: float = 0.7,
        max_tokens: int = 256,
    ) -> Iterator[tuple[str, str]]:
        r"""
        Yields `("reasoning", text)` and `("content", text)` deltas as the server streams them.

        Args:
            messages (`list[dict]`): OpenAI chat messages (media as `image_url` / `video_url` data URIs, `input_audio` parts).
            thinking (`bool`, *optional*, defaults to False): sent as `chat_template_kwargs.enable_thinking`.
            thinking_budget (`int`, *optional*): reasoning tokens allowed before `</think>` is forced (thinking only).
            temperature (`float`, *optional*, defaults to 0.7), max_tokens (`int`, *optional*, defaults to 256).

        Raises `ChatBackendError` with the server's message when the request is refused or fails.
        """
        import openai

        extra = {"chat_template_kwargs": {"enable_thinking": thinking}}
        if thinking and thinking_budget is not None:
            extra["thinking_budget"] = int(thinking_budget)
        try:
            stream = self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                stream=True,
                temperature=temperature,
                max_tokens=max_tokens,
                extra_body=extra,
            )
            for chunk in stream:
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                extra_fields = delta.model_extra or {}
                reasoning = extra_fields.get("reasoning_content") or extra_fields.get("reasoning")
                if reasoning:
                    yield "reasoning", reasoning
                if delta.content:
                    yield "content", delta.content
        except openai.OpenAIError as err:
            raise ChatBackendError(_message(err)) from None


def _message(err) -> str:
    """The server's explanation from an `openai` error (the body's `error.message` when there is one)."""
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if body.get("message"):
            return str(body["message"])
    return str(getattr(err, "message", None) or err)


__all__ = ["ChatBackend", "ChatBackendError", "ModelCard"]
