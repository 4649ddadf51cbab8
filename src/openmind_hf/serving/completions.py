"""`POST /v1/chat/completions`: read and validate the body, build the prompt, queue it, answer (JSON or SSE).

Everything before the first streamed byte can still fail with a 4xx (bad JSON, limits, media, context length);
after that, problems are reported as an `error` event inside the stream, which the `openai` client raises.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from .conversation import PromptBuilder
from .engine import Completion, GenerationEngine, GenerationJob, SamplingParams
from .errors import APIError, bad_request, describe_validation_errors
from .schemas import ChatCompletionRequest

_GRACE_S = 2.0  # the worker stops a row at its deadline; waiting a little longer lets it say so itself


@dataclass(frozen=True)
class CompletionLimits:
    r"""
    Args:
        max_tokens_cap (`int`): the largest `max_tokens` a request may ask for (also the default).
        request_timeout_s (`float`): wall-clock limit per request, from the first byte to the last.
        max_body_bytes (`int`): request body limit (also enforced while reading chunked bodies).
        context_length (`int`): prompt + completion tokens the model can attend to.
    """

    max_tokens_cap: int
    request_timeout_s: float
    max_body_bytes: int
    context_length: int


class ChatCompletions:
    """The endpoint's logic, bound to one model, prompt builder, engine and set of limits."""

    def __init__(self, model_name: str, builder: PromptBuilder, engine: GenerationEngine, limits: CompletionLimits):
        self.model_name, self.builder, self.engine, self.limits = model_name, builder, engine, limits

    async def __call__(self, request: Request):
        deadline = time.monotonic() + self.limits.request_timeout_s
        chat = await self._read_request(request, deadline)
        params, prompt = await self._prepare(chat, deadline)
        job = self.engine.submit(prompt.inputs, params, deadline)
        meta = {
            "id": f"chatcmpl-{request.scope['state']['request_id']}",
            "created": int(time.time()),
            "model": self.model_name,
        }
        usage = {"prompt_tokens": prompt.prompt_tokens}
        if chat.stream:
            include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
            return StreamingResponse(
                self._stream(job, meta, usage, include_usage, deadline),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await self._complete(request, job, meta, usage, deadline)

    async def _read_request(self, request: Request, deadline: float) -> ChatCompletionRequest:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise APIError(415, "Content-Type must be application/json.", code="unsupported_media_type")
        try:
            body = await asyncio.wait_for(self._read_body(request), timeout=max(deadline - time.monotonic(), 0.001))
        except asyncio.TimeoutError:
            raise APIError(408, "The request body was not received in time.", code="request_timeout") from None
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise bad_request("The body is not valid JSON.", code="invalid_json") from None
        try:
            chat = ChatCompletionRequest.model_validate(payload)
        except ValidationError as err:
            errors = err.errors(include_input=False, include_url=False, include_context=False)
            raise bad_request(describe_validation_errors(errors), code="invalid_request") from None
        if chat.model != self.model_name:
            raise APIError(404, f"Unknown model: this server serves {self.model_name!r}.", code="model_not_found")
        return chat

    async def _read_body(self, request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.limits.max_body_bytes:  # chunked bodies declare no length up front
                raise APIError(413, f"The request body is larger than the {self.limits.max_body_bytes}-byte limit.")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _prepare(self, chat: ChatCompletionRequest, deadline: float):
        try:
            thinking, budget = chat.thinking()
        except ValueError as err:
            raise bad_request(str(err), param="chat_template_kwargs") from None
        if thinking and not self.builder.supports_thinking:
            raise bad_request("This model has no thinking mode (its tokenizer lacks <think> and </think>).")
        requested = chat.requested_max_tokens
        cap = self.limits.max_tokens_cap
        if requested is not None and requested > cap:
            raise bad_request(f"max_tokens is above this server's cap of {cap}.", param="max_tokens")
        try:
            prompt = await asyncio.wait_for(
                run_in_threadpool(self.builder.build, chat, thinking), timeout=max(deadline - time.monotonic(), 0.001)
            )
        except asyncio.TimeoutError:
            raise _timeout(self.limits.request_timeout_s) from None
        defaults = self.engine.defaults  # the checkpoint's generation_config fills what the request leaves out
        if requested is not None:
            max_new = requested
        else:
            max_new = min(cap, self.limits.context_length - prompt.prompt_tokens, defaults.max_new_tokens or cap)
        if prompt.prompt_tokens + max(max_new, 1) > self.limits.context_length:
            raise bad_request(
                f"This model's context is {self.limits.context_length} tokens; the messages take "
                f"{prompt.prompt_tokens} tokens (images and audio included) and max_tokens asks for "
                f"{max(max_new, 1)} more. Shorten the conversation, send fewer or smaller media, or lower max_tokens.",
                code="context_length_exceeded",
            )
        min_tokens = chat.min_tokens or 0
        if min_tokens > max_new:
            raise bad_request("min_tokens is larger than max_tokens.", param="min_tokens")
        params = SamplingParams(
            max_new_tokens=max_new,
            **defaults.resolve(chat.temperature, chat.top_p),
            seed=chat.seed,
            min_tokens=min_tokens,
            stop=tuple(chat.stop or ()),
            thinking=thinking,
            opens_thinking=prompt.opens_thinking,
            thinking_budget=budget,
        )
        return params, prompt

    async def _events(self, job: GenerationJob, deadline: float):
        """Yields the job's events; cancels it (and raises a timeout) if the worker misses the deadline."""
        while True:
            try:
                event = await asyncio.wait_for(job.events.get(), timeout=deadline + _GRACE_S - time.monotonic())
            except asyncio.TimeoutError:
                job.cancel()
                raise _timeout(self.limits.request_timeout_s) from None
            yield event
            if event[0] != "delta":
                return

    async def _complete(self, request: Request, job: GenerationJob, meta: dict, usage: dict, deadline: float):
        texts = {"reasoning": [], "content": []}
        watcher = asyncio.create_task(_cancel_on_disconnect(request, job))
        try:
            async for event in self._events(job, deadline):
                if event[0] == "delta":
                    texts[event[1]].append(event[2])
                elif event[0] == "error":
                    raise APIError(500, "Generation failed; see the server log.", type="server_error")
                else:
                    completion = event[1]
        finally:
            watcher.cancel()
            job.cancel()
        if completion.finish_reason in ("timeout", "cancelled"):
            raise _timeout(self.limits.request_timeout_s)
        message = {"role": "assistant", "content": "".join(texts["content"])}
        if texts["reasoning"]:
            message["reasoning_content"] = "".join(texts["reasoning"])
        body = {
            **meta,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": completion.finish_reason, "logprobs": None}],
            "usage": _usage(usage, completion),
        }
        return JSONResponse(body)

    async def _stream(self, job: GenerationJob, meta: dict, usage: dict, include_usage: bool, deadline: float):
        def chunk(delta: dict, finish_reason: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            return _sse({**meta, "object": "chat.completion.chunk", "choices": [choice]})

        try:
            yield chunk({"role": "assistant", "content": ""})
            async for event in self._events(job, deadline):
                if event[0] == "delta":
                    key = "reasoning_content" if event[1] == "reasoning" else "content"
                    yield chunk({key: event[2]})
                elif event[0] == "error":
                    yield _sse(APIError(500, "Generation failed; see the server log.", type="server_error").body())
                elif event[1].finish_reason in ("timeout", "cancelled"):
                    yield _sse(_timeout(self.limits.request_timeout_s).body())
                else:
                    yield chunk({}, event[1].finish_reason)
                    if include_usage:
                        yield _sse(
                            {
                                **meta,
                                "object": "chat.completion.chunk",
                                "choices": [],
                                "usage": _usage(usage, event[1]),
                            }
                        )
        except APIError as err:  # the deadline passed while waiting for the worker
            yield _sse(err.body())
        finally:
            job.cancel()  # no-op when finished; stops the row when the client went away
        yield "data: [DONE]\n\n"


async def _cancel_on_disconnect(request: Request, job: GenerationJob) -> None:
    # Non-streaming requests are not cancelled by Starlette when the client leaves: watch for it ourselves.
    while not job.cancelled.is_set():
        if await request.is_disconnected():
            job.cancel()
            return
        await asyncio.sleep(0.5)


def _timeout(limit: float) -> APIError:
    return APIError(504, f"The request exceeded the {limit:g} s time limit and was stopped.", type="timeout_error")


def _usage(usage: dict, completion: Completion) -> dict:
    return {
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": completion.completion_tokens,
        "total_tokens": usage["prompt_tokens"] + completion.completion_tokens,
        "completion_tokens_details": {"reasoning_tokens": completion.reasoning_tokens},
    }


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


__all__ = ["CompletionLimits", "ChatCompletions"]
