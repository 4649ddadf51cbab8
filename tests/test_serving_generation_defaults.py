"""Sampling defaults are the model's: what a request leaves out comes from the checkpoint's `generation_config`.

Two copies of the tiny preset are served for real (uvicorn on 127.0.0.1), loaded the way `openmind serve` loads
them; one says `do_sample=False`, the other samples with its own temperature / top_p / top_k / penalty / length.
"""

from __future__ import annotations

import openai
import pytest
import torch
from transformers import GenerationConfig

from openmind_hf.serving import BackgroundServer, ServeSettings, create_app, load_model

API_KEY = "test-key-defaults"
QUESTION = [{"role": "user", "content": "Say something."}]
SAMPLING = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.1}


def _checkpoint(tmp_path_factory, name: str, **generation):
    """The tiny preset saved with `generation` in its generation_config. Its newline row of the head is zeroed: the
    random model's greedy answer is otherwise only newlines, which the server strips to an empty answer."""
    from openmind_hf import build_tiny_preset

    model, processor = build_tiny_preset(seed=0)
    newline = processor.tokenizer("\n", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        model.lm_head.weight[newline] = 0.0
    model.generation_config.update(**generation)
    path = tmp_path_factory.mktemp(name)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    assert GenerationConfig.from_pretrained(path).to_diff_dict().items() >= generation.items()
    return path


@pytest.fixture(scope="module")
def serve():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    servers = []

    def start(path):
        model, processor = load_model(str(path))
        settings = ServeSettings(model_name="tiny", api_key=API_KEY, max_tokens_cap=64, generation_workers=1)
        app = create_app(model, processor, settings)
        server = BackgroundServer(app).__enter__()
        servers.append(server)
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)
        return client, app.state.engine

    yield start
    for server in servers:
        server.__exit__(None, None, None)
    torch.set_num_threads(threads)


def test_a_greedy_checkpoint_answers_the_same_without_a_temperature(tmp_path_factory, serve):
    client, engine = serve(_checkpoint(tmp_path_factory, "greedy", do_sample=False))

    def answer(**kwargs) -> str:
        response = client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=12, **kwargs)
        return response.choices[0].message.content

    answers = [answer() for _ in range(5)]
    assert len(set(answers)) == 1 and answers[0], answers
    assert [p.temperature for p in list(engine.recent_params)[-5:]] == [0.0] * 5
    # A request temperature still overrides the checkpoint's greedy default (and this model samples visibly).
    sampled = [answer(temperature=1.0, seed=seed) for seed in range(5)]
    assert engine.recent_params[-1].temperature == 1.0 and len(set(sampled)) > 1, sampled


def test_unspecified_parameters_come_from_generation_config(tmp_path_factory, serve):
    path = _checkpoint(tmp_path_factory, "sampling", max_new_tokens=6, **SAMPLING)
    client, engine = serve(path)
    response = client.chat.completions.create(model="tiny", messages=QUESTION, seed=0)
    used = engine.recent_params[-1]  # what PerRowSampler and generate ran this request with
    assert (used.temperature, used.top_p, used.top_k, used.repetition_penalty) == (0.7, 0.8, 20, 1.1)
    assert used.max_new_tokens == 6 and response.usage.completion_tokens <= 6
    client.chat.completions.create(model="tiny", messages=QUESTION, temperature=0.3, top_p=0.5, max_tokens=3)
    used = engine.recent_params[-1]
    assert (used.temperature, used.top_p, used.top_k, used.max_new_tokens) == (0.3, 0.5, 20, 3)
    client.chat.completions.create(model="tiny", messages=QUESTION, temperature=0, max_tokens=3)
    assert engine.recent_params[-1].temperature == 0  # greedy on request, whatever the checkpoint says


def test_top_k_and_repetition_penalty_act_per_row():
    from openmind_hf.serving.engine import PerRowSampler, SamplingParams

    scores = torch.tensor([[0.0, 3.0, 2.0, 1.0]] * 2)  # [B=2, V=4]
    rows = [
        SamplingParams(4, temperature=1.0, top_k=1, seed=0),
        SamplingParams(4, temperature=0, repetition_penalty=4.0),
    ]
    out = PerRowSampler(rows, prompt_length=2, eos_token_ids=set())(torch.tensor([[0, 1], [0, 1]]), scores)
    assert int(out[0].argmax()) == 1 and int(torch.isfinite(out[0]).sum()) == 1  # top_k=1: only the best survives
    assert int(out[1].argmax()) == 2  # token 1 is in the sequence: 3.0 / 4 < 2.0
