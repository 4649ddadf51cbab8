"""The OpenAI-compatible API through the official `openai` client, against a real uvicorn server on 127.0.0.1.

The served checkpoint is the tiny preset after ~60 optimizer steps that make it memorise three answers
(one with a `<think>` block), so responses can be checked exactly: "four", "blue", and "add two and two" as
`reasoning_content`. It is saved and loaded back with `load_model`, the path `openmind serve` uses.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
import torch
from PIL import Image

from openmind_hf.serving import BackgroundServer, ServeSettings, create_app, load_model

API_KEY = "test-key-api"
QUESTION = "What is two plus two?"
REASONING = "add two and two"
LESSONS = [  # (user text, enable_thinking, memorised answer)
    (QUESTION, True, f"<think>\n{REASONING}\n</think>\n\nfour"),
    (QUESTION, False, "four"),
    ("Name a color.", False, "blue"),
]


def teach(model, processor, steps: int = 80) -> None:
    """Overfits the model on LESSONS (prompt tokens unlabelled), as a short SFT run would."""
    tokenizer = processor.tokenizer
    rows = []
    for text, thinking, answer in LESSONS:
        prompt = processor.apply_chat_template(
            [[{"role": "user", "content": text}]], add_generation_prompt=True, tokenize=True, return_dict=True,
            return_tensors="pt", enable_thinking=thinking,
        )["input_ids"][0]  # fmt: skip
        target = torch.tensor(tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
        rows.append((torch.cat([prompt, target]), torch.cat([torch.full_like(prompt, -100), target])))
    length = max(len(ids) for ids, _ in rows)
    ids = torch.stack(
        [torch.nn.functional.pad(i, (length - len(i), 0), value=tokenizer.pad_token_id) for i, _ in rows]
    )
    labels = torch.stack([torch.nn.functional.pad(lab, (length - len(lab), 0), value=-100) for _, lab in rows])
    mask = (ids != tokenizer.pad_token_id).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert loss.item() < 0.05, f"the tiny model did not memorise its lessons (loss {loss.item():.3f})"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from openmind_hf import build_tiny_preset

    # One intra-op thread: on a shared 2-core machine, 2 threads per op ran the tiny model ~10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, processor = build_tiny_preset(seed=0)
    teach(model, processor)
    path = tmp_path_factory.mktemp("taught-tiny")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    model, processor = load_model(str(path))
    settings = ServeSettings(
        model_name="openmind-tiny", api_key=API_KEY, max_tokens_cap=2048, max_concurrent=32, generation_workers=2
    )
    app = create_app(model, processor, settings)
    with BackgroundServer(app) as server:
        yield server, app, processor
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served[0].url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)


def user(text, *parts):
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}] if parts else text}]


def image_part(size=(48, 40)):
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, "PNG")
    return {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()},
    }


def audio_part(fmt="wav", seconds=1.0, rate=22050):
    samples = (np.sin(np.arange(int(seconds * rate)) * 0.05) * 0.3).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt.upper())
    return {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(buffer.getvalue()).decode(), "format": fmt},
    }


def ask(client, messages, **kwargs):
    kwargs.setdefault("temperature", 0)
    return client.chat.completions.create(model="openmind-tiny", messages=messages, **kwargs)


def collect_stream(stream):
    chunks = list(stream)
    reasoning = [c.choices[0].delta.model_extra.get("reasoning_content") for c in chunks if c.choices]
    content = [c.choices[0].delta.content for c in chunks if c.choices]
    return chunks, "".join(r for r in reasoning if r), "".join(c for c in content if c)


def prompt_tokens(processor, messages, thinking=False) -> int:
    return processor.apply_chat_template(
        [messages], add_generation_prompt=True, tokenize=True, return_dict=True, enable_thinking=thinking
    )["input_ids"][0].__len__()


def test_models_and_health(served, client):
    assert [m.id for m in client.models.list().data] == ["openmind-tiny"]
    assert httpx.get(served[0].url + "/health").json() == {"status": "ok"}


def test_non_streaming_answer_and_usage(served, client):
    processor = served[2]
    response = ask(client, user(QUESTION))
    choice = response.choices[0]
    assert choice.message.content == "four" and choice.finish_reason == "stop"
    assert choice.message.model_extra.get("reasoning_content") is None
    answer_tokens = len(processor.tokenizer("four", add_special_tokens=False)["input_ids"]) + 1  # + <|im_end|>
    assert response.usage.prompt_tokens == prompt_tokens(processor, user(QUESTION))
    assert response.usage.completion_tokens == answer_tokens
    assert response.usage.total_tokens == response.usage.prompt_tokens + answer_tokens
    assert response.id.startswith("chatcmpl-") and response.model == "openmind-tiny"


def test_streaming_answer_ends_with_done(served, client):
    chunks, reasoning, content = collect_stream(
        ask(client, user("Name a color."), stream=True, stream_options={"include_usage": True})
    )
    assert content == "blue" and reasoning == ""
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    # The raw event stream, as a browser or curl sees it.
    body = {"model": "openmind-tiny", "messages": user("Name a color."), "stream": True, "temperature": 0}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.stream("POST", served[0].url + "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events) and events[-1] == "data: [DONE]"


@pytest.mark.parametrize(
    "switch",
    [
        {"chat_template_kwargs": {"enable_thinking": True}},
        {"reasoning_effort": "high"},
        {"thinking_budget": 64},
    ],
    ids=["chat_template_kwargs", "reasoning_effort", "thinking_budget"],
)
def test_thinking_is_returned_separately(served, client, switch):
    tokenizer = served[2].tokenizer
    response = ask(client, user(QUESTION), extra_body=switch) if "reasoning_effort" not in switch else ask(
        client, user(QUESTION), reasoning_effort=switch["reasoning_effort"]
    )  # fmt: skip
    message = response.choices[0].message
    assert message.model_extra["reasoning_content"] == REASONING
    assert message.content == "four"
    thinking_tokens = len(tokenizer(f"<think>\n{REASONING}\n</think>", add_special_tokens=False)["input_ids"])
    assert response.usage.completion_tokens_details.reasoning_tokens == thinking_tokens


def test_thinking_streamed_before_the_answer(client):
    stream = ask(client, user(QUESTION), stream=True, extra_body={"chat_template_kwargs": {"enable_thinking": True}})
    chunks, reasoning, content = collect_stream(stream)
    assert (reasoning, content) == (REASONING, "four")
    kinds = [
        "r" if c.choices[0].delta.model_extra.get("reasoning_content") else "c"
        for c in chunks
        if c.choices and (c.choices[0].delta.content or c.choices[0].delta.model_extra.get("reasoning_content"))
    ]
    assert kinds == sorted(kinds, reverse=True) and "r" in kinds and "c" in kinds  # all reasoning, then answer


def test_thinking_budget_cuts_the_reasoning(client):
    full = ask(client, user(QUESTION), extra_body={"thinking_budget": 64})
    cut = ask(client, user(QUESTION), extra_body={"thinking_budget": 2})
    reasoning = cut.choices[0].message.model_extra.get("reasoning_content") or ""
    assert len(reasoning) < len(REASONING) and REASONING.startswith(reasoning)
    assert cut.usage.completion_tokens_details.reasoning_tokens <= 2 + 2  # <think>, 2 tokens, forced </think>
    assert full.usage.completion_tokens_details.reasoning_tokens > 4


def test_image_reaches_the_prompt(served, client):
    processor = served[2]
    response = ask(client, user("Describe it.", image_part()), max_tokens=8)
    assert response.choices[0].finish_reason in ("stop", "length")
    extra = response.usage.prompt_tokens - prompt_tokens(processor, user("Describe it."))
    assert extra == processor.num_image_tokens > 0


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_audio_reaches_the_prompt(served, client, fmt):
    processor = served[2]
    response = ask(client, user("Transcribe.", audio_part(fmt)), max_tokens=8)
    assert response.choices[0].finish_reason in ("stop", "length")
    extra = response.usage.prompt_tokens - prompt_tokens(processor, user("Transcribe."))
    clip = np.zeros(16000, dtype=np.float32)  # 1 s at 16 kHz: what the server decodes and resamples to
    expected = prompt_tokens(processor, user("Transcribe.", {"type": "audio", "audio": clip})) - prompt_tokens(
        processor, user("Transcribe.")
    )
    assert extra == expected > 0


def test_image_and_audio_streamed_with_thinking(client):
    stream = ask(
        client,
        user("What do you see and hear?", image_part(), audio_part("flac")),
        stream=True,
        max_tokens=12,
        extra_body={"chat_template_kwargs": {"enable_thinking": True}},
    )
    chunks, reasoning, content = collect_stream(stream)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


def test_stop_max_tokens_and_seed(client):
    stopped = ask(client, user(QUESTION), stop=["ou"])
    assert (stopped.choices[0].message.content, stopped.choices[0].finish_reason) == ("f", "stop")
    capped = ask(client, user("Tell me a long story."), max_tokens=5, extra_body={"min_tokens": 5})
    assert capped.choices[0].finish_reason == "length" and capped.usage.completion_tokens == 5
    story = user("Tell me a long story.")
    sampled = [
        ask(client, story, temperature=1.5, seed=s, max_tokens=12).choices[0].message.content for s in (1, 1, 2, 3)
    ]
    assert sampled[0] == sampled[1], "the same seed must give the same text"
    assert len(set(sampled[1:])) > 1, "different seeds should give different samples"
    kwargs = {"max_completion_tokens": 3, "extra_body": {"min_tokens": 3}}
    assert ask(client, story, **kwargs).usage.completion_tokens == 3


def test_concurrent_requests_are_batched_and_correct(served, client):
    engine = served[1].state.engine
    before = len(engine.batch_sizes)
    # Two long generations occupy both workers; the short requests queue behind them and leave as one batch.
    long_kwargs = {"max_tokens": 300, "extra_body": {"min_tokens": 300}}
    with ThreadPoolExecutor(8) as pool:
        longs = [pool.submit(ask, client, user("Tell me a long story."), **long_kwargs) for _ in range(2)]
        time.sleep(0.3)
        shorts = [pool.submit(ask, client, user(QUESTION if i % 2 else "Name a color.")) for i in range(6)]
        answers = [f.result().choices[0].message.content for f in shorts]
        assert all(f.result().usage.completion_tokens == 300 for f in longs)
    assert answers == ["blue", "four"] * 3
    assert max(engine.batch_sizes[before:]) > 1, engine.batch_sizes[before:]


def test_a_long_generation_does_not_hold_back_a_short_one(client):
    finished = threading.Event()

    def long_stream():
        stream = ask(
            client, user("Tell me a long story."), stream=True, max_tokens=1000, extra_body={"min_tokens": 1000}
        )
        for _ in stream:
            pass
        finished.set()

    thread = threading.Thread(target=long_stream)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    assert ask(client, user(QUESTION)).choices[0].message.content == "four"
    short_latency = time.monotonic() - started
    assert not finished.is_set(), "the long generation finished first: make it longer for this machine"
    thread.join(120)
    assert short_latency < 2.0
