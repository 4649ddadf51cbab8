"""Loading without the package (trust_remote_code), the pipeline, streaming, the `openmind preset` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from threading import Thread

import numpy as np
import pytest
from PIL import Image

import openmind_hf  # noqa: F401

IMAGE = Image.new("RGB", (40, 40), (200, 20, 20))
TONE = (0.4 * np.sin(2 * np.pi * 660 * np.arange(16000) / 16000)).astype(np.float32)


def _chat(*blocks):
    return [{"role": "user", "content": [*blocks, {"type": "text", "text": "What is it?"}]}]


REMOTE_SCRIPT = r"""
import json, sys
import numpy as np
sys.modules["openmind_hf"] = None  # importing OpenMind would fail: prove the checkpoint stands alone
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
path, out = sys.argv[1], sys.argv[2]
model = AutoModelForImageTextToText.from_pretrained(path, trust_remote_code=True)
processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
tone = (0.4 * np.sin(2 * np.pi * 660 * np.arange(16000) / 16000)).astype(np.float32)
chat = [{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (40, 40), (200, 20, 20))},
        {"type": "audio", "audio": tone}, {"type": "text", "text": "What is it?"}]}]
inputs = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True,
                                       return_tensors="pt")
logits = model(**inputs).logits
tokens = model.generate(**inputs, max_new_tokens=6, do_sample=False)
np.save(out + ".npy", logits.detach().numpy())
json.dump({"tokens": tokens.tolist(), "ids": inputs["input_ids"].tolist()}, open(out + ".json", "w"))
"""


def test_trust_remote_code_without_the_package(tiny_checkpoint, tiny_model_and_processor, tmp_path):
    files = {p.name for p in tiny_checkpoint.iterdir()}
    assert {"configuration_openmind.py", "modeling_openmind.py", "processing_openmind.py"} <= files
    auto_map = json.loads((tiny_checkpoint / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForImageTextToText"] == "modeling_openmind.OpenMindForConditionalGeneration"
    assert auto_map["AutoModel"] == "modeling_openmind.OpenMindModel"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = tmp_path / "remote"
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, str(tiny_checkpoint), str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    model, processor = tiny_model_and_processor
    inputs = processor.apply_chat_template(
        _chat({"type": "image", "image": IMAGE}, {"type": "audio", "audio": TONE}),
        add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
    )  # fmt: skip
    remote = json.loads((tmp_path / "remote.json").read_text())
    assert remote["ids"] == inputs["input_ids"].tolist()
    expected = model(**inputs).logits.detach().numpy()
    assert np.abs(np.load(tmp_path / "remote.npy") - expected).max() <= 1e-6
    assert remote["tokens"] == model.generate(**inputs, max_new_tokens=6, do_sample=False).tolist()


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    from transformers import pipeline

    return pipeline("image-text-to-text", model=str(tiny_checkpoint))


@pytest.mark.parametrize(
    "blocks, towers",
    [
        ([{"type": "image", "image": IMAGE}], {"vision"}),
        ([{"type": "audio", "audio": TONE}], {"audio"}),
        ([{"type": "image", "image": IMAGE}, {"type": "audio", "audio": TONE}], {"vision", "audio"}),
    ],
    ids=["image", "audio", "image+audio"],
)
def test_pipeline_answers_image_audio_and_both(pipe, blocks, towers):
    calls = []
    model = pipe.model.model
    hooks = [
        model.vision_tower.register_forward_hook(lambda *a: calls.append("vision")),
        model.audio_tower.register_forward_hook(lambda *a: calls.append("audio")),
    ]
    try:
        out = pipe(text=_chat(*blocks), max_new_tokens=6, return_full_text=False, generate_kwargs={"do_sample": False})
    finally:
        for hook in hooks:
            hook.remove()
    assert set(calls) == towers  # each given modality reached its tower, and only those
    inputs = pipe.processor.apply_chat_template(
        _chat(*blocks), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    tokens = pipe.model.generate(**inputs, max_new_tokens=6, do_sample=False)[0, inputs["input_ids"].shape[1] :]
    assert out[0]["generated_text"] == pipe.processor.decode(tokens, skip_special_tokens=True)


def test_streaming_with_text_iterator_streamer(tiny_model_and_processor):
    from transformers import TextIteratorStreamer

    model, processor = tiny_model_and_processor
    inputs = processor.apply_chat_template(
        _chat({"type": "image", "image": IMAGE}), add_generation_prompt=True, tokenize=True, return_dict=True,
        return_tensors="pt",
    )  # fmt: skip
    streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = dict(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    thread = Thread(target=model.generate, kwargs={**kwargs, "streamer": streamer})
    thread.start()
    streamed = "".join(streamer)
    thread.join()
    full = model.generate(**kwargs)[0, inputs["input_ids"].shape[1] :]
    assert streamed == processor.decode(full, skip_special_tokens=True)


def test_preset_command(tmp_path):
    from openmind_hf.cli import main

    assert main(["preset", "tiny", "--output", str(tmp_path / "p")]) == 0
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "p")
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


def test_cli_help_lists_commands():
    result = subprocess.run([sys.executable, "-m", "openmind_hf.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("preset", "convert", "train", "eval", "serve", "quantize", "push", "data"):
        assert command in result.stdout
