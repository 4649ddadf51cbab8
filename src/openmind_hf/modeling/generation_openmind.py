"""Generation helpers: the thinking switch and budget, and `generate()` settings for fast decoding."""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

# A prompt whose last `</think>` is at most this many tokens from its end closed the block itself: that is the empty
# `<think>\n\n</think>\n\n` the chat template writes when thinking is off. A `</think>` from an earlier turn is
# followed by at least `<|im_end|>`, the next user turn and the assistant header, far more than this.
_CLOSED_BY_PROMPT_TAIL = 4


class ThinkingBudgetLogitsProcessor(LogitsProcessor):
    r"""
    Keeps generation to the documented thinking format: at most one `<think> ... </think>` block, at the start of the
    answer, no longer than `budget` tokens, and followed by an answer.

    Per row, from the prompt (the ids of the first call) and the tokens generated since:
    - thinking off (the prompt ends with the closed, empty block the chat template writes when `enable_thinking` is
      false) or thinking over (a `</think>` was generated): `<think>` and `</think>` are suppressed, so no thinking
      text reaches the answer;
    - not started (thinking on, nothing generated yet): `<think>` may open the block as the first token only;
      `</think>` is suppressed;
    - inside the block (opened by the model, or by the prompt): `<think>` is suppressed; once `budget` tokens were
      written, `</think>` is forced; with a budget, end-of-sequence is suppressed inside the block (it must close);
    - the first token after a generated `</think>` cannot be end-of-sequence, so the answer is never empty.

    Args:
        think_start_token_id (`int`): id of `<think>`.
        think_end_token_id (`int`): id of `</think>`.
        budget (`int`, *optional*): thinking tokens allowed before `</think>` is forced; 0 closes the block
            immediately; `None` lets the block run until the model closes it.
        eos_token_ids (`list[int]`, *optional*): end-of-sequence ids (blocked inside a budgeted block and right after
            `</think>`).
    """

    def __init__(
        self,
        think_start_token_id: int,
        think_end_token_id: int,
        budget: int | None = None,
        eos_token_ids: list[int] | tuple[int, ...] = (),
    ):
        if budget is not None and budget < 0:
            raise ValueError(f"thinking_budget must be >= 0, got {budget}.")
        self.start_id = think_start_token_id
        self.end_id = think_end_token_id
        self.budget = budget
        self.eos = [int(i) for i in eos_token_ids]
        self.prompt_length: int | None = None
        self.prompt_marks: tuple[torch.Tensor, torch.Tensor] | None = None  # [B] last <think>, </think> (-1: none)
        self.closed_by_prompt: torch.Tensor | None = None  # [B] bool

    def _last(self, input_ids: torch.LongTensor, token_id: int) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return torch.where(input_ids == token_id, positions, -1).amax(dim=1)  # [B], -1 when absent

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # input_ids: [B, T]; scores: [B, V]
        length = input_ids.shape[1]
        if self.prompt_length is None:  # the first call sees exactly the (left-padded) prompt
            self.prompt_length = length
            self.prompt_marks = prompt_start, prompt_end = (
                self._last(input_ids, self.start_id),
                self._last(input_ids, self.end_id),
            )
            self.closed_by_prompt = (prompt_end > prompt_start) & (prompt_end >= length - _CLOSED_BY_PROMPT_TAIL)
        # Later calls scan only the generated tail: the prompt's marks are known (every row keeps its prompt, beam
        # search reorders rows only among the beams of one prompt).
        last_start, last_end = self.prompt_marks
        if length > self.prompt_length:
            tail = input_ids[:, self.prompt_length :]
            in_tail = self._last(tail, self.start_id), self._last(tail, self.end_id)
            last_start = torch.where(in_tail[0] >= 0, in_tail[0] + self.prompt_length, last_start)
            last_end = torch.where(in_tail[1] >= 0, in_tail[1] + self.prompt_length, last_end)
        generated = length - self.prompt_length
        thinking = last_start > last_end
        over = self.closed_by_prompt | (last_end >= self.prompt_length)
        force_end = thinking & (length - 1 - last_start >= self.budget) if self.budget is not None else None
        no_start = over | thinking if generated == 0 else torch.ones_like(thinking)
        no_end = ~thinking
        no_eos = (last_end == length - 1) & (last_end >= self.prompt_length)
        if self.budget is not None:
            no_eos = no_eos | thinking
        # Masks only, no host syncs: this runs once per generated token.
        inf = float("-inf")
        scores = scores.clone()
        scores[:, self.start_id] = scores[:, self.start_id].masked_fill(no_start, inf)
        scores[:, self.end_id] = scores[:, self.end_id].masked_fill(no_end, inf)
        if self.eos:
            scores[:, self.eos] = scores[:, self.eos].masked_fill(no_eos[:, None], inf)
        if force_end is not None:
            forced = torch.full_like(scores, inf)
            forced[:, self.end_id] = 0.0
            scores = torch.where(force_end[:, None], forced, scores)
        return scores


def fast_decoding_kwargs(device: str | torch.device = "cpu") -> dict:
    r"""
    `generate()` keyword arguments for little per-token overhead: a static KV cache (fixed shapes, nothing allocated
    per step) and a decode step compiled by `torch.compile`.

    On CUDA, transformers compiles the decode step by itself once the cache is static (with CUDA graphs). On other
    devices it only does when asked, so the compile config is passed too. The first call compiles (tens of seconds on
    CPU); later calls with the same batch size and `max_new_tokens` reuse the compiled step. Prefill stays eager:
    it is where the media are merged, with host-side count checks.

        model.generate(**inputs, max_new_tokens=64, **fast_decoding_kwargs(model.device))

    Args:
        device (`str` or `torch.device`, *optional*, defaults to `"cpu"`): where the model runs.
    """
    kwargs = {"cache_implementation": "static"}
    if torch.device(device).type != "cuda":
        from transformers import CompileConfig

        compile_config = CompileConfig(fullgraph=True, dynamic=False, mode="default")  # CUDA graphs are CUDA-only
        compile_config._compile_all_devices = True  # transformers' switch for compiling off GPU
        kwargs["compile_config"] = compile_config
    return kwargs


__all__ = ["ThinkingBudgetLogitsProcessor", "fast_decoding_kwargs"]
