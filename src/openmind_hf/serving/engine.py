"""Generation off the event loop: worker threads that batch concurrent requests into one `generate` call.

Requests wait in one queue. Each of `num_workers` threads takes the oldest request plus every compatible request
waiting behind it (same thinking budget, same media tensor shapes; up to `max_batch_size`), left-pads them into one
batch and runs `model.generate`. With two or more workers a long generation never holds the others back, and under
load the queue drains in batches.

What a request leaves unspecified comes from the checkpoint's `generation_config` (`SamplingDefaults`), as it would
in `model.generate` or `pipeline`: a checkpoint saved with `do_sample=False` answers greedily unless the request sets
a temperature; one saved with `temperature=0.7, top_p=0.8` samples with those.

`generate` takes one generation config per call, but requests differ in temperature, top_p, seed, max_tokens and
stop strings. Two small hooks make one batch serve them all:
- `PerRowSampler` (a logits processor) samples each row with its own temperature / top_p / top_k / repetition
  penalty and its own seeded
  `torch.Generator`, then leaves only the chosen token, so greedy decoding keeps it. A row's seed therefore gives the
  same tokens whatever it is batched with, and no request touches the global RNG other threads use.
- `RowTracker` (a stopping criterion, called once per step with the new token of every row) detokenises, splits
  reasoning from the answer, applies stop strings, max_tokens, cancellation and the deadline per row, and sends
  text deltas to the waiting request. `TextIteratorStreamer` cannot be used: it only handles batches of one.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from .decoding import CompletionText, IncrementalDetokenizer
from .errors import describe_exception

logger = logging.getLogger(__name__)

# Keys aligned with the token sequence: left-padded when batching. Everything else is concatenated on dim 0.
TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")


@dataclass(frozen=True)
class SamplingDefaults:
    r"""
    What a request that does not say otherwise is generated with: the checkpoint's `generation_config`, with
    transformers' own fallbacks for what it leaves unset (greedy, temperature 1, top_p 1, top_k 50, no penalty).

    Args:
        do_sample (`bool`): sample (True) or decode greedily (False).
        temperature (`float`): sampling temperature when sampling.
        top_p (`float`): nucleus mass when sampling.
        top_k (`int`): keep the k most likely tokens when sampling (0: all).
        repetition_penalty (`float`): CTRL-style penalty on tokens already in the sequence (1.0: none).
        max_new_tokens (`int`, *optional*): default completion length; `None` leaves it to the server's cap.
    """

    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50
    repetition_penalty: float = 1.0
    max_new_tokens: int | None = None

    @classmethod
    def from_generation_config(cls, config) -> SamplingDefaults:
        def get(name, fallback):
            value = getattr(config, name, None)
            return fallback if value is None else value

        return cls(
            do_sample=bool(get("do_sample", False)),
            temperature=float(get("temperature", 1.0)),
            top_p=float(get("top_p", 1.0)),
            top_k=int(get("top_k", 50)),
            repetition_penalty=float(get("repetition_penalty", 1.0)),
            max_new_tokens=getattr(config, "max_new_tokens", None),
        )

    def resolve(self, temperature: float | None = None, top_p: float | None = None) -> dict:
        """Sampling settings for one request: its own values where given, these defaults elsewhere. A request
        temperature decides greedy (0) or sampling (> 0); without one, `do_sample` does."""
        if temperature is None:
            temperature = self.temperature if self.do_sample else 0.0
        return {
            "temperature": temperature,
            "top_p": self.top_p if top_p is None else top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
        }


@dataclass(frozen=True)
class SamplingParams:
    r"""
    Args:
        max_new_tokens (`int`): tokens to generate at most (reasoning included).
        temperature (`float`, *optional*, defaults to 1.0): 0 means greedy.
        top_p (`float`, *optional*, defaults to 1.0): nucleus sampling mass.
        top_k (`int`, *optional*, defaults to 0): keep the k most likely tokens when sampling; 0 keeps all.
        repetition_penalty (`float`, *optional*, defaults to 1.0): penalty on tokens already in the sequence.
        seed (`int`, *optional*): seeds this request's own generator.
        min_tokens (`int`, *optional*, defaults to 0): end-of-sequence is blocked before this many tokens.
        stop (`tuple[str]`, *optional*): strings that end the answer.
        thinking (`bool`, *optional*, defaults to False): the prompt switched thinking on.
        opens_thinking (`bool`, *optional*, defaults to False): the prompt ends inside an open `<think>` block.
        thinking_budget (`int`, *optional*): passed to `generate(thinking_budget=...)`.
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    min_tokens: int = 0
    stop: tuple[str, ...] = ()
    thinking: bool = False
    opens_thinking: bool = False
    thinking_budget: int | None = None


@dataclass
class Completion:
    """What a finished request reports: why it ended and how many tokens it used."""

    finish_reason: str  # "stop" | "length" | "cancelled" | "timeout"
    completion_tokens: int
    reasoning_tokens: int


@dataclass(eq=False)
class GenerationJob:
    r"""
    One request in the engine. Events arrive on `events` (an `asyncio.Queue` of the submitting loop):
    `("delta", kind, text)`, then `("done", Completion)` or `("error", None)`.
    """

    inputs: dict
    params: SamplingParams
    deadline: float
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def prompt_tokens(self) -> int:
        return int(self.inputs["attention_mask"].sum())

    def batch_key(self) -> tuple:
        """Jobs with equal keys can share one `generate` call."""
        shapes = tuple(
            sorted(
                (k, tuple(v.shape[1:])) for k, v in self.inputs.items() if k not in TOKEN_KEYS and torch.is_tensor(v)
            )
        )
        return (self.params.thinking_budget, tuple(sorted(self.inputs)), shapes)

    def emit(self, *event) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def cancel(self) -> None:
        self.cancelled.set()


class PerRowSampler(LogitsProcessor):
    """Samples each row with its own temperature, top_k, top_p, repetition penalty and generator, and returns scores
    where only the chosen token is finite (so `generate`'s greedy step picks it). Greedy rows and rows another
    processor already forced to one token are left to the greedy step (after the repetition penalty). End-of-sequence
    is masked for rows below their `min_tokens`."""

    def __init__(self, params: list[SamplingParams], prompt_length: int, eos_token_ids: set[int]):
        self.params, self.prompt_length = params, prompt_length
        self.eos = sorted(eos_token_ids)
        self.generators: list[torch.Generator | None] = [None] * len(params)

    def _generator(self, row: int, device) -> torch.Generator:
        if self.generators[row] is None:
            seed = self.params[row].seed
            self.generators[row] = torch.Generator(device=device).manual_seed(
                seed if seed is not None else secrets.randbits(63)
            )
        return self.generators[row]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # scores: [B, V]
        scores = scores.clone()
        generated = input_ids.shape[1] - self.prompt_length  # same for every row: the batch is left-padded
        for row, params in enumerate(self.params):
            if generated < params.min_tokens and self.eos:
                scores[row, self.eos] = float("-inf")
            if params.repetition_penalty != 1.0:  # as transformers' RepetitionPenaltyLogitsProcessor, per row
                seen = input_ids[row].unique()
                taken = scores[row, seen]
                penalty = params.repetition_penalty
                scores[row, seen] = torch.where(taken < 0, taken * penalty, taken / penalty)
            logits = scores[row]
            if params.temperature == 0 or int(torch.isfinite(logits).sum()) <= 1:
                continue
            logits = logits.float() / params.temperature
            if 0 < params.top_k < logits.numel():
                kth = logits.topk(params.top_k).values[-1]
                logits[logits < kth] = float("-inf")
            if params.top_p < 1.0:
                sorted_logits, order = logits.sort(descending=True)
                cumulative = sorted_logits.softmax(-1).cumsum(-1)
                drop = cumulative - sorted_logits.softmax(-1) >= params.top_p  # keeps the token that crosses top_p
                logits[order[drop]] = float("-inf")
            token = torch.multinomial(logits.softmax(-1), 1, generator=self._generator(row, logits.device))
            scores[row] = float("-inf")
            scores[row, token] = 0.0
        return scores


class RowTracker(StoppingCriteria):
    """Per-row bookkeeping, called by `generate` once per step after the new tokens are appended."""

    def __init__(self, jobs: list[GenerationJob], tokenizer, eos_token_ids: set[int]):
        self.jobs = jobs
        self.eos = eos_token_ids
        self.detok = [IncrementalDetokenizer(tokenizer) for _ in jobs]
        self.texts = [CompletionText(j.params.thinking, j.params.opens_thinking, list(j.params.stop)) for j in jobs]
        self.tokens = [0] * len(jobs)
        self.reasoning_tokens = [0] * len(jobs)
        self.finish: list[str | None] = [None] * len(jobs)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        now = time.monotonic()
        new_tokens = input_ids[:, -1].tolist()
        for row, (job, token) in enumerate(zip(self.jobs, new_tokens)):
            if self.finish[row] is not None:
                continue
            self.tokens[row] += 1
            if token in self.eos:
                self.finish[row] = "stop"
                continue
            text, was_reasoning = self.texts[row], self.texts[row].in_reasoning
            for kind, delta in text.feed(self.detok[row].push(token)):
                job.emit("delta", kind, delta)
            self.reasoning_tokens[row] += was_reasoning or text.in_reasoning
            if self.texts[row].stopped:
                self.finish[row] = "stop"
            elif job.cancelled.is_set():
                self.finish[row] = "cancelled"
            elif now > job.deadline:
                self.finish[row] = "timeout"
            elif self.tokens[row] >= job.params.max_new_tokens:
                self.finish[row] = "length"
        return torch.tensor([f is not None for f in self.finish], dtype=torch.bool, device=input_ids.device)

    def close(self) -> None:
        """Flushes held-back text and reports every row as done."""
        for row, job in enumerate(self.jobs):
            for kind, delta in self.texts[row].finish():
                job.emit("delta", kind, delta)
            reason = self.finish[row] or "length"
            job.emit("done", Completion(reason, self.tokens[row], self.reasoning_tokens[row]))


def collate(inputs: list[dict], pad_token_id: int) -> dict:
    """Left-pads the token-aligned tensors of single-request inputs and concatenates the media tensors."""
    length = max(x["input_ids"].shape[1] for x in inputs)
    batch = {}
    for key in inputs[0]:
        values = [x[key] for x in inputs]
        if key in TOKEN_KEYS:
            fill = pad_token_id if key == "input_ids" else 0
            values = [torch.nn.functional.pad(v, (length - v.shape[1], 0), value=fill) for v in values]
            batch[key] = torch.cat(values, dim=0)
        elif torch.is_tensor(values[0]):
            batch[key] = torch.cat(values, dim=0)
        else:
            batch[key] = [item for value in values for item in value]
    return batch


class GenerationEngine:
    r"""
    Runs `model.generate` for queued requests on `num_workers` threads, batching compatible requests.

    Args:
        model (`PreTrainedModel`): a generation model (inputs as produced by `processor.apply_chat_template`).
        tokenizer (`PreTrainedTokenizerBase`): decodes the generated tokens.
        num_workers (`int`, *optional*, defaults to 2): concurrent `generate` calls.
        max_batch_size (`int`, *optional*, defaults to 8): requests per `generate` call.
    """

    def __init__(self, model, tokenizer, num_workers: int = 2, max_batch_size: int = 8):
        self.model, self.tokenizer = model, tokenizer
        self.max_batch_size = max_batch_size
        self.defaults = SamplingDefaults.from_generation_config(model.generation_config)
        eos = model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        self.eos_token_ids = set(eos) | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_token_ids)
        self._pending: deque[GenerationJob] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self.batch_sizes: list[int] = []  # sizes of the batches run so far (observability and tests)
        self.recent_params: deque[SamplingParams] = deque(maxlen=64)  # what the last rows were generated with
        self._active: set[GenerationJob] = set()  # requests inside a `generate` call right now
        self._workers = [
            threading.Thread(target=self._work, name=f"openmind-generate-{i}", daemon=True) for i in range(num_workers)
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, inputs: dict, params: SamplingParams, deadline: float) -> GenerationJob:
        """Queues one request (inputs of batch size 1); must be called from the event loop that reads its events."""
        job = GenerationJob(inputs=inputs, params=params, deadline=deadline, loop=asyncio.get_running_loop())
        with self._ready:
            if self._closed:
                raise RuntimeError("the generation engine is shut down")
            self._pending.append(job)
            self._ready.notify()
        return job

    @property
    def running(self) -> int:
        """Requests inside a `generate` call right now."""
        return len(self._active)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancels queued and running requests (rows stop at their next token) and joins the workers."""
        with self._ready:
            self._closed = True
            for job in [*self._pending, *self._active]:
                job.cancel()
            self._ready.notify_all()
        for worker in self._workers:
            worker.join(timeout)

    def _take_batch(self) -> list[GenerationJob] | None:
        with self._ready:
            while not self._pending and not self._closed:
                self._ready.wait()
            if self._closed:
                return None
            first = self._pending.popleft()
            key, batch, rest = first.batch_key(), [first], deque()
            while self._pending and len(batch) < self.max_batch_size:
                job = self._pending.popleft()
                (batch if job.batch_key() == key else rest).append(job)
            self._pending.extendleft(reversed(rest))
            return batch

    def _work(self) -> None:
        while (batch := self._take_batch()) is not None:
            live = [job for job in batch if not job.cancelled.is_set() and time.monotonic() < job.deadline]
            for job in batch:
                if job not in live:
                    reason = "cancelled" if job.cancelled.is_set() else "timeout"
                    job.emit("done", Completion(reason, 0, 0))
            if not live:
                continue
            with self._ready:
                self._active.update(live)
            try:
                self._generate(live)
            except Exception as exc:
                logger.error("generation failed for a batch of %d: %s", len(live), describe_exception(exc))
                for job in live:
                    job.emit("error", None)
            finally:
                with self._ready:
                    self._active.difference_update(live)

    @torch.no_grad()  # not inference_mode: quantized (quanto) layers fail on inference tensors
    def _generate(self, jobs: list[GenerationJob]) -> None:
        self.batch_sizes.append(len(jobs))
        self.recent_params.extend(job.params for job in jobs)
        batch = collate([job.inputs for job in jobs], self.pad_token_id)
        device, dtype = self.model.device, self.model.dtype
        batch = {
            k: (v.to(device, dtype=dtype) if v.is_floating_point() else v.to(device)) if torch.is_tensor(v) else v
            for k, v in batch.items()
        }
        params = [job.params for job in jobs]
        tracker = RowTracker(jobs, self.tokenizer, self.eos_token_ids)
        extra = {}
        if params[0].thinking_budget is not None:
            extra["thinking_budget"] = params[0].thinking_budget
        self.model.generate(
            **batch,
            max_new_tokens=max(p.max_new_tokens for p in params),
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            repetition_penalty=1.0,  # applied per row by PerRowSampler, not twice
            logits_processor=LogitsProcessorList(
                [PerRowSampler(params, batch["input_ids"].shape[1], self.eos_token_ids)]
            ),
            stopping_criteria=StoppingCriteriaList([tracker]),
            pad_token_id=self.pad_token_id,
            **extra,
        )
        tracker.close()


__all__ = [
    "SamplingDefaults",
    "SamplingParams",
    "Completion",
    "GenerationJob",
    "GenerationEngine",
    "PerRowSampler",
    "RowTracker",
    "collate",
]
