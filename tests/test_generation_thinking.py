"""Thinking behaves as documented in `generate`, the pipeline and the server.

The tiny model is random, so it is pushed towards the failure: its LM head gets a bias that makes `<think>` the
most likely token everywhere (and end-of-sequence the next most likely). Then:
- thinking off: no `<think>` / `</think>` in what is generated (the template already wrote the empty block);
- thinking on with a budget of N: `<think>`, at most N tokens, `</think>`, then at least one answer token.
"""

from __future__ import annotations

import contextlib

import openai
import pytest
import torch

from openmind_hf.serving import BackgroundServer, ServeSettings, create_app

QUESTION = [{"role": "user", "content": "What is two plus two?"}]
API_KEY = "test-key-thinking"


@pytest.fixture(scope="module")
def thinker():
    """The tiny preset whose head prefers `<think>` (+100) and then end-of-sequence (+50) at every position."""
    from openmind_hf import build_tiny_preset

    torch.manual_seed(0)
    model, processor = build_tiny_preset(seed=0)
    head = model.lm_head
    head.bias = torch.nn.Parameter(torch.zeros(head.out_features))
    with torch.no_grad():
        head.bias[model.config.think_start_token_id] = 100.0
        head.bias[processor.tokenizer.eos_token_id] = 50.0
    model.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield model, processor
    torch.set_num_threads(threads)


@contextlib.contextmanager
def answering(model, processor):
    """With a word preferred over end-of-sequence (random tokens are often half a UTF-8 character, which the server
    rightly holds back), so that a readable answer gets written."""
    bias, word = model.lm_head.bias, processor.tokenizer("four", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        bias[word] = 80.0
    try:
        yield
    finally:
        with torch.no_grad():
            bias[word] = 0.0


def _prompt(processor, thinking: bool) -> dict:
    return processor.apply_chat_template(
        QUESTION, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
        enable_thinking=thinking,
    )  # fmt: skip


def _generate(model, processor, thinking: bool, **kwargs) -> list[int]:
    inputs = _prompt(processor, thinking)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=16, do_sample=False, **kwargs)
    return output[0, inputs["input_ids"].shape[1] :].tolist()


def test_the_biased_model_would_open_a_thinking_block(thinker):
    model, processor = thinker
    inputs = _prompt(processor, thinking=False)
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    assert int(logits.argmax()) == model.config.think_start_token_id  # without the guard it would think


@pytest.mark.parametrize("budget", [None, 4])
def test_thinking_off_generates_no_thinking_text(thinker, budget):
    model, processor = thinker
    start, end = model.config.think_start_token_id, model.config.think_end_token_id
    with answering(model, processor):
        tokens = _generate(model, processor, thinking=False, thinking_budget=budget)
    assert start not in tokens and end not in tokens and len(tokens) == 16
    text = processor.decode(tokens, skip_special_tokens=True)
    assert "<think>" not in text and "</think>" not in text


@pytest.mark.parametrize("budget", [0, 1, 4])
def test_a_budget_of_n_gives_at_most_n_thinking_tokens_then_an_answer(thinker, budget):
    model, processor = thinker
    start, end, eos = (
        model.config.think_start_token_id,
        model.config.think_end_token_id,
        processor.tokenizer.eos_token_id,
    )
    tokens = _generate(model, processor, thinking=True, thinking_budget=budget)
    assert tokens[0] == start and tokens.count(start) == 1 and tokens.count(end) == 1
    closed = tokens.index(end)
    assert closed - 1 <= budget  # tokens strictly between <think> and </think>
    answer = tokens[closed + 1 :]
    assert answer and answer[0] != eos, f"no answer after </think>: {tokens}"


def test_the_pipeline_answers_without_thinking_text(thinker):
    from transformers import pipeline

    model, processor = thinker
    with answering(model, processor):
        pipe = pipeline("image-text-to-text", model=model, processor=processor, device="cpu")
        for kwargs in ({}, {"thinking_budget": 4}):
            out = pipe(text=QUESTION, max_new_tokens=8, generate_kwargs={"do_sample": False, **kwargs})
            answer = out[0]["generated_text"][-1]["content"]
            assert answer and "<think>" not in answer and "</think>" not in answer


def test_the_server_keeps_thinking_out_of_the_answer(thinker):
    model, processor = thinker
    settings = ServeSettings(model_name="thinker", api_key=API_KEY, max_tokens_cap=64, generation_workers=1)
    with BackgroundServer(create_app(model, processor, settings)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)
        with answering(model, processor):
            off = client.chat.completions.create(model="thinker", messages=QUESTION, max_tokens=8, temperature=0)
        message = off.choices[0].message
        assert message.content and off.usage.completion_tokens == 8
        assert "<think>" not in message.content and message.model_extra.get("reasoning_content") is None
        with answering(model, processor):
            budgeted = client.chat.completions.create(
                model="thinker", messages=QUESTION, max_tokens=16, temperature=0, extra_body={"thinking_budget": 4}
            )
        message = budgeted.choices[0].message
        assert message.model_extra.get("reasoning_content")  # the 4 thinking tokens, reported apart
        assert message.content and "</think>" not in message.content and "<think>" not in message.content
        assert budgeted.usage.completion_tokens_details.reasoning_tokens <= 4 + 2  # <think>, 4 tokens, </think>
