"""Quantized export: int8 (torchao) keeps greedy tokens, int4 (quanto) reloads bit-exactly, towers can stay fp32.

The random tiny preset degenerates to repeating one token, which would make "greedy tokens match" trivially true.
So the module first trains it for a few dozen steps to answer the two probe chats (the probe batch of
`openmind_hf.export.quantize`): its greedy continuations are then real sentences with clear logit margins.
"""

from __future__ import annotations

import json

import pytest
import torch

from openmind_hf.building.inference import (
    QUANTO_MAP_FILE,
    QUANTO_WEIGHTS_FILE,
    load_model_for_inference,
    load_quantized,
)
from openmind_hf.cli import main
from openmind_hf.export.quantize import (
    RECORD_FILE,
    TOWER_MODULES,
    full_precision_modules,
    probe_batch,
    quantize_checkpoint,
    quantize_with_quanto,
    resolve_backend,
    save_quanto,
)

ANSWERS = ("A grey square of noise and a low hum.", "Two plus two is four.")
TOWER_LINEAR = "model.vision_tower.encoder.layers.0.self_attn.q_proj"
AUDIO_LINEAR = "model.audio_tower.layers.0.fc1"
LM_LINEAR = "model.language_model.layers.0.self_attn.q_proj"


def _train_on_probe(model, processor, steps: int = 40) -> None:
    """Teaches the model ANSWERS for the probe chats (towers frozen; LM + projectors train)."""
    tokenizer = processor.tokenizer
    inputs = probe_batch(processor)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    answers = [tokenizer(a, add_special_tokens=False).input_ids + [eos] for a in ANSWERS]
    width = max(map(len, answers))
    answer_ids = torch.tensor([a + [tokenizer.pad_token_id] * (width - len(a)) for a in answers])
    answer_mask = torch.tensor([[1] * len(a) + [0] * (width - len(a)) for a in answers])
    input_ids = torch.cat([inputs["input_ids"], answer_ids], 1)
    attention_mask = torch.cat([inputs["attention_mask"], answer_mask], 1)
    labels = torch.where(attention_mask.bool(), input_ids, -100)
    labels[:, : inputs["input_ids"].shape[1]] = -100
    # Left padding: positions as generate() computes them, so training and decoding agree.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    batch = dict(inputs, input_ids=input_ids, attention_mask=attention_mask, labels=labels, position_ids=position_ids)
    model.model.vision_tower.requires_grad_(False)
    model.model.audio_tower.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.requires_grad_(True)
    model.eval()


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    from openmind_hf import build_tiny_preset

    torch.manual_seed(0)
    # The 0.02 init these tolerances (int8 logits within 1% of the largest) were calibrated on; the preset's default
    # width-scaled init trains larger weights, whose int8 error is 1.4% with the same greedy tokens.
    model, processor = build_tiny_preset(seed=0, init_std=0.02)
    _train_on_probe(model, processor)
    path = tmp_path_factory.mktemp("trained-tiny")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def int8_export(trained_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    return out, quantize_checkpoint(trained_checkpoint, out, bits=8)


@pytest.fixture(scope="module")
def int4_export(trained_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("int4")
    return out, quantize_checkpoint(trained_checkpoint, out, bits=4, probe_new_tokens=4)


@pytest.fixture(scope="module", params=["int8", "int4"])
def quantized_dir(request):
    """Each quantized checkpoint `openmind quantize` writes on CPU by default: torchao int8, quanto int4."""
    return request.getfixturevalue(f"{request.param}_export")[0]


def _assert_quantized(model) -> None:
    from optimum.quanto import QModuleMixin
    from torchao.quantization import Int8Tensor

    layer = model.get_submodule(LM_LINEAR)
    assert isinstance(layer, QModuleMixin) or isinstance(layer.weight, Int8Tensor), type(layer.weight)


@pytest.fixture(scope="module")
def reference_and_probe(trained_checkpoint):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(trained_checkpoint).eval()
    return model, probe_batch(AutoProcessor.from_pretrained(trained_checkpoint))


def _greedy(model, inputs, n=16):
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=n, min_new_tokens=n)
    return out[:, inputs["input_ids"].shape[1] :]


def _linear_weight(model, name):
    return model.get_submodule(name).weight


def test_int8_greedy_tokens_match_fp32(int8_export, reference_and_probe, trained_checkpoint):
    from torchao.quantization import Int8Tensor
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out, report = int8_export
    reference, inputs = reference_and_probe
    # The output is a plain transformers checkpoint: from_pretrained alone loads it, weights still int8.
    int8 = AutoModelForImageTextToText.from_pretrained(out).eval()
    assert isinstance(_linear_weight(int8, LM_LINEAR), Int8Tensor)
    ref_tokens, int8_tokens = _greedy(reference, inputs), _greedy(int8, inputs)
    assert torch.equal(ref_tokens, int8_tokens)
    # ...and the tokens are the trained answers, not a degenerate repeat that any model would match.
    texts = AutoProcessor.from_pretrained(trained_checkpoint).batch_decode(ref_tokens, skip_special_tokens=True)
    assert texts[0].startswith(ANSWERS[0]) and texts[1].startswith(ANSWERS[1]), texts
    with torch.no_grad():
        ref_logits = reference(**inputs).logits
        diff = (ref_logits - int8(**inputs).logits).abs()[inputs["attention_mask"].bool()].max()
    assert 0 < diff.item() < 0.01 * ref_logits.abs().max().item()  # really quantized, and close
    assert report.greedy_tokens_match and report.greedy_token_agreement == 1.0
    assert report.max_abs_logit_diff == pytest.approx(diff.item(), rel=1e-3, abs=1e-5)


def test_int8_loads_in_bfloat16_for_serving(int8_export, reference_and_probe):
    from torchao.quantization import Int8Tensor

    _, inputs = reference_and_probe
    model = load_model_for_inference(int8_export[0], dtype="bfloat16", device="cpu")
    assert model.dtype == torch.bfloat16 and isinstance(_linear_weight(model, LM_LINEAR), Int8Tensor)
    bf16_inputs = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in inputs.items()}
    assert _greedy(model, bf16_inputs, n=4).shape == (2, 4)


def test_int8_report_and_size(int8_export, trained_checkpoint):
    out, report = int8_export
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["backend"] == "torchao" and record["bits"] == 8
    assert record["kept_full_precision"] == ["lm_head"]
    # Every Linear but the tied lm_head is int8; the embeddings stay fp32, so a bit over half the fp32 size.
    assert report.quantized_weights_bytes < 0.6 * report.original_weights_bytes
    assert (out / "processor_config.json").is_file() and (out / "modeling_openmind.py").is_file()


def test_int4_quanto_reloads_exactly_as_saved(trained_checkpoint, reference_and_probe, tmp_path):
    from optimum.quanto import QModuleMixin, qint4
    from transformers import AutoModelForImageTextToText

    _, inputs = reference_and_probe
    model = AutoModelForImageTextToText.from_pretrained(trained_checkpoint).eval()
    quantize_with_quanto(model, 4, full_precision_modules(model, keep_towers_fp=False))
    with torch.no_grad():
        logits_before = model(**inputs).logits
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    save_quanto(model, tmp_path)
    assert (tmp_path / QUANTO_WEIGHTS_FILE).is_file() and (tmp_path / QUANTO_MAP_FILE).is_file()

    reloaded = load_model_for_inference(tmp_path)  # dispatches to load_quantized
    layer = reloaded.get_submodule(LM_LINEAR)
    assert isinstance(layer, QModuleMixin) and layer.weight_qtype == qint4
    state_after = reloaded.state_dict()
    assert state_after.keys() == state_before.keys()
    for key, value in state_before.items():
        assert torch.equal(value, state_after[key]), key
    assert reloaded.lm_head.weight is reloaded.get_input_embeddings().weight  # tie restored, not stored twice
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs).logits, logits_before)
    fp32_bytes = (trained_checkpoint / "model.safetensors").stat().st_size
    assert (tmp_path / QUANTO_WEIGHTS_FILE).stat().st_size < 0.45 * fp32_bytes  # packed 4-bit, fp32 embeddings
    with pytest.raises(ValueError, match="runs in torch.float32 only"):  # quanto int4 cannot change dtype
        load_model_for_inference(tmp_path, dtype="bfloat16")


def test_quanto_loader_refuses_a_mismatched_file(trained_checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(trained_checkpoint).eval()
    quantize_with_quanto(model, 4, ["lm_head"])
    save_quanto(model, tmp_path)
    state = load_file(tmp_path / QUANTO_WEIGHTS_FILE)
    state.pop(f"{LM_LINEAR}.bias")
    save_file(state, tmp_path / QUANTO_WEIGHTS_FILE)
    with pytest.raises(ValueError, match=f"missing.*{LM_LINEAR}.bias"):
        load_quantized(tmp_path)


def test_cli_int4_keep_towers_leaves_towers_unquantized(trained_checkpoint, reference_and_probe, tmp_path, capsys):
    """`openmind quantize --bits 4 --keep-towers-fp` (auto -> quanto on CPU): towers and projectors bit-identical."""
    from optimum.quanto import QModuleMixin

    reference, _ = reference_and_probe
    out = tmp_path / "int4-towers-fp"
    assert (
        main(["quantize", "--model", str(trained_checkpoint), "--bits", "4", "--output", str(out), "--keep-towers-fp"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "optimum-quanto qint4" in printed and "greedy tokens" in printed
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["backend"] == "quanto" and set(TOWER_MODULES) <= set(record["kept_full_precision"])

    model = load_model_for_inference(out)
    assert isinstance(model.get_submodule(LM_LINEAR), QModuleMixin)
    reference_modules = dict(reference.named_modules())
    for name, module in model.named_modules():
        if name.startswith(TOWER_MODULES) and isinstance(module, torch.nn.Linear):
            assert not isinstance(module, QModuleMixin), name
            assert torch.equal(module.weight, reference_modules[name].weight), name
    assert torch.equal(_linear_weight(model, AUDIO_LINEAR), _linear_weight(reference, AUDIO_LINEAR))


def test_torchao_keep_towers_fp(trained_checkpoint, reference_and_probe, tmp_path):
    from torchao.quantization import Int8Tensor

    reference, _ = reference_and_probe
    report = quantize_checkpoint(trained_checkpoint, tmp_path, bits=8, keep_towers_fp=True, probe_new_tokens=0)
    assert report.max_abs_logit_diff is None  # probe skipped on request
    model = load_model_for_inference(tmp_path)
    assert isinstance(_linear_weight(model, LM_LINEAR), Int8Tensor)
    for name in (TOWER_LINEAR, AUDIO_LINEAR, "model.multi_modal_projector.linear_1", "model.audio_projector.linear_2"):
        weight = _linear_weight(model, name)
        assert type(weight) is torch.nn.Parameter and torch.equal(weight, _linear_weight(reference, name)), name


def test_torchao_int4_on_cpu_round_trips_through_from_pretrained(trained_checkpoint, reference_and_probe, tmp_path):
    """torchao's CPU int4 path (Intx, int8 storage): reloads with plain from_pretrained, same logits as the report."""
    from torchao.quantization import IntxUnpackedToInt8Tensor
    from transformers import AutoModelForImageTextToText

    reference, inputs = reference_and_probe
    report = quantize_checkpoint(trained_checkpoint, tmp_path, bits=4, backend="torchao", probe_new_tokens=4)
    assert "IntxWeightOnlyConfig" in report.method and report.notes
    model = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert isinstance(_linear_weight(model, LM_LINEAR), IntxUnpackedToInt8Tensor)
    with torch.no_grad():
        diff = (reference(**inputs).logits - model(**inputs).logits).abs()[inputs["attention_mask"].bool()].max()
    assert diff.item() == pytest.approx(report.max_abs_logit_diff, rel=1e-4)
    assert diff.item() > 0


def test_bnb_needs_cuda_with_a_clear_message(trained_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="bitsandbytes quantization needs a CUDA GPU"):
        resolve_backend(8, "bnb", device=None)
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        main(
            [
                "quantize",
                "--model",
                str(trained_checkpoint),
                "--bits",
                "4",
                "--output",
                str(tmp_path / "x"),
                "--backend",
                "bnb",
            ]
        )
    assert (
        resolve_backend(8) == "torchao"
        and resolve_backend(4) == "quanto"
        and resolve_backend(4, device="cuda") == "torchao"
    )


def test_refuses_to_quantize_in_place(trained_checkpoint):
    with pytest.raises(ValueError, match="must differ"):
        quantize_checkpoint(trained_checkpoint, trained_checkpoint, bits=8)


@pytest.mark.gpu
@pytest.mark.parametrize(("bits", "backend"), [(8, "bnb"), (4, "bnb"), (4, "torchao")])
def test_cuda_backends_round_trip(trained_checkpoint, tmp_path, bits, backend):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: bitsandbytes and torchao int4 kernels are CUDA-only")
    if backend == "bnb":
        pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed (pip install bitsandbytes)")
    report = quantize_checkpoint(trained_checkpoint, tmp_path, bits=bits, backend=backend, device="cuda")
    model = load_model_for_inference(tmp_path, device="cuda")
    assert model.device.type == "cuda"
    assert report.max_abs_logit_diff is not None and report.greedy_token_agreement >= 0.5


def test_quantized_checkpoint_is_served(quantized_dir):
    """`openmind serve` loads an int8 / int4 checkpoint (through `load_model_for_inference`) and answers like
    the quantized model does when called directly."""
    from openai import OpenAI

    from openmind_hf.serving import BackgroundServer, ServeSettings, create_app, load_model

    model, processor = load_model(str(quantized_dir))
    _assert_quantized(model)
    chat = [{"role": "user", "content": "What is 2 plus 2?"}]
    inputs = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt")  # fmt: skip
    expected_ids = model.generate(**inputs, max_new_tokens=8, do_sample=False)[0, inputs["input_ids"].shape[1] :]
    expected = processor.decode(expected_ids, skip_special_tokens=True)
    app = create_app(model, processor, ServeSettings(model_name="int4", api_key="k"))
    with BackgroundServer(app) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)
        reply = client.chat.completions.create(model="int4", messages=chat, max_tokens=8, temperature=0)
    assert expected.strip()  # the probe-trained model answers something
    assert reply.choices[0].message.content.strip() == expected.strip()


# ----------------------------------------------------------------------------------------------------------------
# The usual entry points load a quantized checkpoint like any other (int8: torchao, int4: quanto)


def test_auto_class_loads_quantized_checkpoints(quantized_dir, reference_and_probe):
    """`AutoModelForImageTextToText.from_pretrained(DIR)`: quantized weights, same tokens as our own loader."""
    from transformers import AutoModelForImageTextToText

    _, inputs = reference_and_probe
    model = AutoModelForImageTextToText.from_pretrained(quantized_dir)
    assert not model.training
    _assert_quantized(model)
    assert model.lm_head.weight is model.get_input_embeddings().weight
    assert torch.equal(_greedy(model, inputs, n=4), _greedy(load_model_for_inference(quantized_dir), inputs, n=4))


def test_quanto_checkpoint_refuses_from_pretrained_options_it_cannot_apply(int4_export):
    from transformers import AutoModelForImageTextToText, QuantoConfig

    with pytest.raises(ValueError, match="already quantized.*quantization_config"):
        AutoModelForImageTextToText.from_pretrained(int4_export[0], quantization_config=QuantoConfig(weights="int8"))
    with pytest.raises(ValueError, match="runs in torch.float32 only"):
        AutoModelForImageTextToText.from_pretrained(int4_export[0], dtype=torch.bfloat16)


def test_pipeline_and_eval_on_quantized_checkpoints(quantized_dir, tmp_path, capsys):
    """`pipeline("image-text-to-text", model=DIR)` and `openmind eval --model DIR` load it, and eval's prediction is
    what the pipeline generates."""
    from PIL import Image
    from transformers import pipeline

    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "red.png")
    row = {"image": "red.png", "question": "What color is it?", "answers": ["red"] * 10, "question_id": 0}
    (tmp_path / "data" / "vqa").mkdir(parents=True)
    (tmp_path / "data" / "vqa" / "test.jsonl").write_text(json.dumps(row) + "\n")
    predictions = tmp_path / "predictions.jsonl"
    args = ["eval", "--model", str(quantized_dir), "--data", str(tmp_path / "data"), "--tasks", "vqa",
            "--media_root", str(tmp_path), "--max-new-tokens", "6", "--output", str(tmp_path / "report.json"),
            "--predictions", str(predictions)]  # fmt: skip
    assert main(args) == 0
    record = json.loads(predictions.read_text().splitlines()[0])
    pipe = pipeline("image-text-to-text", model=str(quantized_dir), device="cpu")
    _assert_quantized(pipe.model)
    chat = [{"role": "user", "content": [{"type": "image", "image": str(tmp_path / "red.png")},
                                         {"type": "text", "text": row["question"]}]}]  # fmt: skip
    out = pipe(text=chat, max_new_tokens=6, generate_kwargs={"do_sample": False})
    assert out[0]["generated_text"][-1]["content"] == record["generation"]
    assert json.loads((tmp_path / "report.json").read_text())["tasks"]["vqa"]["metrics"]["accuracy"] in (0.0, 1.0)


def test_cli_shows_progress_per_stage_and_block(trained_checkpoint, tmp_path, capsys):
    """int4 on a big model ran minutes in silence: now each stage logs a line and quanto's blocks have a bar."""
    out = tmp_path / "int4"
    argv = ["quantize", "--model", str(trained_checkpoint), "--bits", "4", "--output", str(out), "--probe-tokens", "2"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    for stage in ("[1/4] loading", "[2/4] quantizing to int4 with quanto", "[3/4] saved to", "[4/4] reloading"):
        assert f"openmind quantize: {stage}" in err, err
    assert "quantizing to qint4" in err and "block" in err  # the tqdm bar over decoder / encoder layers
