"""Pydantic models of the OpenAI chat-completions request, and the thinking switch read from it.

Unknown top-level fields are ignored (clients send many optional ones), but fields that would change the answer
and that we cannot honour (`tools`, `response_format`, `logprobs`, `n > 1`) are refused rather than dropped.
"""

from __future__ import annotations

import typing
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# reasoning_effort -> thinking budget in tokens; "none" switches thinking off.
REASONING_EFFORT_BUDGETS: dict[str, int] = {"none": 0, "minimal": 64, "low": 256, "medium": 1024, "high": 4096}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImageURL(_Strict):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL

    @field_validator("image_url", mode="before")
    @classmethod
    def _url_as_string(cls, value):
        # Some clients send `"image_url": "data:..."` instead of `{"url": ...}`.
        return {"url": value} if isinstance(value, str) else value


class InputAudio(_Strict):
    data: str = Field(min_length=1)
    format: Literal["wav", "mp3", "flac"]


class AudioPart(_Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio


class VideoURL(_Strict):
    url: str = Field(min_length=1)
    audio: bool = False  # hear the video's sound too (frames then its audio)
    missing_audio: Literal["error", "silence"] = "error"  # a video without sound: refuse, or hear silence


class VideoPart(_Strict):
    type: Literal["video_url"]
    video_url: VideoURL

    @field_validator("video_url", mode="before")
    @classmethod
    def _url_as_string(cls, value):
        return {"url": value} if isinstance(value, str) else value


ContentPart = Annotated[TextPart | ImagePart | AudioPart | VideoPart, Field(discriminator="type")]


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    reasoning_content: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _check_content(self):
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs `content`")
        if self.role != "user" and isinstance(self.content, list):
            if any(part.type != "text" for part in self.content):
                raise ValueError(f"{self.role} messages may hold only text parts; send images and audio as the user")
        return self


class ChatTemplateKwargs(_Strict):
    enable_thinking: bool | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    r"""
    The body of `POST /v1/chat/completions`.

    Thinking is on when `chat_template_kwargs.enable_thinking` is true, when `reasoning_effort` is set (other than
    `"none"`), or when `thinking_budget` is given; `reasoning_effort` maps to a budget through
    `REASONING_EFFORT_BUDGETS`, and an explicit `thinking_budget` wins over it.
    """

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    chat_template_kwargs: ChatTemplateKwargs | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    thinking_budget: int | None = Field(default=None, ge=0)
    min_tokens: int | None = Field(default=None, ge=0)  # vLLM's extension: no end-of-sequence before this many
    # Refused when set: silently ignoring them would return something other than what was asked for.
    tools: list | None = None
    functions: list | None = None
    logprobs: bool | None = None
    response_format: dict | None = None

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value):
        stops = [value] if isinstance(value, str) else value
        if stops is not None and (len(stops) > 4 or any(not s or len(s) > 64 for s in stops)):
            raise ValueError("`stop` takes at most 4 non-empty strings of at most 64 characters")
        return stops

    @model_validator(mode="after")
    def _check_unsupported(self):
        if self.tools or self.functions:
            raise ValueError("tool calling is not supported by this server")
        if self.logprobs:
            raise ValueError("`logprobs` is not supported by this server")
        if self.response_format and self.response_format.get("type") not in (None, "text"):
            raise ValueError("only the `text` response format is supported")
        if self.messages[-1].role == "assistant":
            raise ValueError("the last message must not be an assistant message: there is nothing to answer")
        return self

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def thinking(self) -> tuple[bool, int | None]:
        """(enable_thinking, thinking_budget) from the request; raises `ValueError` when they contradict."""
        explicit = self.chat_template_kwargs.enable_thinking if self.chat_template_kwargs else None
        if self.thinking_budget is not None:
            asked, budget = True, self.thinking_budget
        elif self.reasoning_effort is not None:
            budget = REASONING_EFFORT_BUDGETS[self.reasoning_effort]
            asked = budget != 0
            budget = budget or None
        else:
            asked, budget = False, None
        if explicit is False and asked:
            raise ValueError("`thinking_budget` / `reasoning_effort` ask for thinking but `enable_thinking` is false")
        enabled = asked if explicit is None else explicit
        return enabled, (budget if enabled else None)


def _field_names(model: type[BaseModel]) -> frozenset[str]:
    """Every field name of `model` and of the models its fields hold (through lists, unions and optionals)."""
    names, seen, todo = set(), set(), [model]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name, field in current.model_fields.items():
            names.add(name)
            annotations = [field.annotation]
            while annotations:
                annotation = annotations.pop()
                if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                    todo.append(annotation)
                annotations.extend(typing.get_args(annotation))
    return frozenset(names)


# The only key names an error message may repeat (see `errors.describe_validation_errors`).
FIELD_NAMES = _field_names(ChatCompletionRequest)

__all__ = [
    "FIELD_NAMES",
    "REASONING_EFFORT_BUDGETS",
    "TextPart",
    "ImagePart",
    "AudioPart",
    "ChatMessage",
    "ChatCompletionRequest",
]
