"""Generation helpers: the thinking budget, and `generate()` settings for fast decoding."""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


class ThinkingBudgetLogitsProcessor(LogitsProcessor):
    r"""
    Closes an open `<think>` block once it has run for `budget` tokens, by forcing `</think>` as the next token.

    A row is "thinking" when its last `<think>` (prompt included) comes after its last `</think>`. The count starts
    after that `<think>`, so a prompt that opens the block (`enable_thinking=True` templates may) is handled the same
    as a block the model opens itself.

    Args:
        think_start_token_id (`int`): id of `<think>`.
        think_end_token_id (`int`): id of `</think>`.
        budget (`int`): thinking tokens allowed before `</think>` is forced; 0 closes the block immediately.
    """

    def __init__(self, think_start_token_id: int, think_end_token_id: int, budget: int):
        if budget < 0:
            raise ValueError(f"thinking_budget must be >= 0, got {budget}.")
        self.start_id = think_start_token_id
        self.end_id = think_end_token_id
        self.budget = budget

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # input_ids: [B, T]; scores: [B, V]
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        last_start = torch.where(input_ids == self.start_id, positions, -1).amax(dim=1)
        last_end = torch.where(input_ids == self.end_id, positions, -1).amax(dim=1)
        thinking = last_start > last_end
        spent = input_ids.shape[1] - 1 - last_start  # tokens written since <think>
        force = thinking & (spent >= self.budget)
        if force.any():
            forced = torch.full_like(scores[0], float("-inf"))
            forced[self.end_id] = 0.0
            scores = torch.where(force[:, None], forced, scores)
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
