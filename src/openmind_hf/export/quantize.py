"""Quantize an OpenMind checkpoint to int8 / int4 and save it; `openmind_hf.building.inference` loads it back.

    openmind quantize --model DIR --bits 8 --output DIR_INT8                  # torchao int8 weight-only
    openmind quantize --model DIR --bits 4 --output DIR_INT4 --keep-towers-fp # quanto int4 (torchao int4 on CUDA)

Backends (`backend="auto"` picks the first that fits):
- **torchao** through transformers' `TorchAoConfig`: int8 weight-only everywhere; int4 weight-only on CUDA
  (`Int4WeightOnlyConfig`, bf16), and on CPU torchao's `IntxWeightOnlyConfig(int4)`, which keeps int4 values in int8
  storage (so the file is int8-sized). Saved with `save_pretrained`; reloads with plain `from_pretrained`.
- **quanto** (optimum-quanto) int8 / int4 with packed int4 storage. transformers cannot save a quanto model, so we
  write the quantized state dict (`quanto_model.safetensors`) and quanto's `quantization_map.json` ourselves, and
  `openmind_hf.building.load_quantized` rebuilds the model and calls quanto's `requantize`. OpenMind's `from_pretrained`
  recognises the layout and calls it, so `AutoModelForImageTextToText.from_pretrained(dir)` and
  `pipeline("image-text-to-text", model=dir)` load it as they load any checkpoint. This is the int4 default on CPU.
- **bnb** (bitsandbytes) 8-bit / 4-bit NF4, CUDA only; saved with `save_pretrained`, reloads with `from_pretrained`.

`lm_head` always stays in full precision (it is tied to the embeddings in small models and is the layer most
sensitive to quantization). `keep_towers_fp=True` also keeps the vision and audio towers and their projectors.

Every run reloads what it wrote and compares it with the original on a fixed probe batch (an image, an audio clip and
text, through the processor): max |logit difference| and greedy-token agreement.
`openmind_hf.building.load_model_for_inference` loads any of these outputs (or a plain checkpoint, local or on the
Hub); `openmind serve` and `openmind eval` use it. The original must hold safetensors weights unless `allow_pickled_weights=True`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..building.inference import QUANTO_MAP_FILE, QUANTO_WEIGHTS_FILE, as_torch_dtype, load_model_for_inference
from .quantize_commands import BACKENDS  # kept with the CLI, which must not import torch for `--help`

logger = logging.getLogger(__name__)  # one line per stage; `openmind quantize` shows them on stderr

RECORD_FILE = "openmind_quantization.json"  # what we did and measured; also marks a quantized directory
# Module names (prefixes) of the towers and projectors that `keep_towers_fp` leaves alone.
TOWER_MODULES = ("model.vision_tower", "model.multi_modal_projector", "model.audio_tower", "model.audio_projector")
ALWAYS_FULL_PRECISION = ("lm_head",)


@dataclass
class QuantizationReport:
    """What `quantize_checkpoint` did and measured. Sizes are bytes of the weight files (`*.safetensors`)."""

    backend: str
    bits: int
    method: str
    kept_full_precision: list[str]
    original_weights_bytes: int
    quantized_weights_bytes: int
    max_abs_logit_diff: float | None = None
    greedy_token_agreement: float | None = None
    greedy_tokens_match: bool | None = None
    probe_new_tokens: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        ratio = self.quantized_weights_bytes / max(self.original_weights_bytes, 1)
        lines = [
            f"method: {self.method}",
            f"full precision: {', '.join(self.kept_full_precision)}",
            f"weights on disk: {self.original_weights_bytes / 1e6:.3f} MB -> {self.quantized_weights_bytes / 1e6:.3f} MB"
            f" ({ratio:.2f}x)",
        ]
        if self.max_abs_logit_diff is not None:
            lines.append(f"max |logit diff| vs original on the probe batch: {self.max_abs_logit_diff:.4g}")
            lines.append(
                f"greedy tokens ({self.probe_new_tokens} new): agreement {self.greedy_token_agreement:.3f},"
                f" identical: {self.greedy_tokens_match}"
            )
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


# ----------------------------------------------------------------------------------------------------------------
# Choosing and configuring a backend


def resolve_backend(bits: int, backend: str = "auto", device: str | None = None) -> str:
    """The backend to use for `bits` on `device`; raises with what to do instead when it cannot run there."""
    if bits not in (4, 8):
        raise ValueError(f"--bits must be 8 or 4, got {bits}.")
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}.")
    cuda = _is_cuda(device)
    if backend == "auto":
        backend = "torchao" if bits == 8 or cuda else "quanto"
    if backend == "bnb":
        if not cuda:
            raise ValueError(
                "bitsandbytes quantization needs a CUDA GPU (pass --device cuda on a GPU machine). On CPU use "
                "--backend torchao (int8) or --backend quanto (int4)."
            )
        _require("bitsandbytes", "pip install bitsandbytes")
    elif backend == "quanto":
        _require("optimum.quanto", "pip install 'openmind-hf[quant]'  (optimum-quanto)")
    else:
        _require("torchao", "pip install 'openmind-hf[quant]'  (torchao)")
    return backend


def _is_cuda(device: str | None) -> bool:
    return str(device).startswith("cuda") if device else False


def _require(module: str, install: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
        raise ImportError(f"This backend needs `{module}`, which is not installed: {install}")


def full_precision_modules(model, keep_towers_fp: bool) -> list[str]:
    """Module names left unquantized: `lm_head`, plus the towers/projectors this model has when asked."""
    names = list(ALWAYS_FULL_PRECISION)
    if keep_towers_fp:
        present = dict(model.named_modules())
        names += [name for name in TOWER_MODULES if present.get(name) is not None]
    return names


def transformers_quantization_config(backend: str, bits: int, skip: list[str], device: str | None, group_size: int):
    """The `quantization_config` for `from_pretrained` (torchao, bnb) and a one-line description of it."""
    if backend == "bnb":
        from transformers import BitsAndBytesConfig

        if bits == 8:
            return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip), "bitsandbytes LLM.int8"
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            llm_int8_skip_modules=skip,
        )
        return config, "bitsandbytes NF4"
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, IntxWeightOnlyConfig, PerGroup
    from transformers import TorchAoConfig

    if bits == 8:
        quant_type, method = Int8WeightOnlyConfig(), "torchao Int8WeightOnlyConfig"
    elif _is_cuda(device):
        # tinygemm layout: the CUDA int4 kernel, bf16 activations.
        quant_type = Int4WeightOnlyConfig(group_size=group_size, int4_packing_format="tile_packed_to_4d")
        method = f"torchao Int4WeightOnlyConfig (group {group_size})"
    else:
        # torchao's int4 tensor layouts need CUDA (or the `mslk` kernels); on CPU its int4 path is Intx, which
        # stores the int4 values unpacked in int8, so it saves compute precision but not disk.
        quant_type = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size))
        method = f"torchao IntxWeightOnlyConfig int4 (group {group_size}, int8 storage)"
    return TorchAoConfig(quant_type=quant_type, modules_to_not_convert=skip), method


# ----------------------------------------------------------------------------------------------------------------
# quanto: our own save (`openmind_hf.building.inference.load_quantized` reads it back)


def save_quanto(model, output_dir: str | Path) -> None:
    """Writes a quanto-quantized (and frozen) model: weights, quantization map, config, code files."""
    from optimum.quanto import quantization_map
    from safetensors.torch import save_file
    from transformers.dynamic_module_utils import custom_object_save

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tied = set(model.all_tied_weights_keys)  # {target: source}: targets are re-tied on load, not stored twice
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k not in tied}
    save_file(state, output_dir / QUANTO_WEIGHTS_FILE, metadata={"format": "pt", "quantizer": "optimum-quanto"})
    (output_dir / QUANTO_MAP_FILE).write_text(json.dumps(quantization_map(model), indent=2) + "\n")
    if getattr(model, "_auto_class", None) is not None:
        custom_object_save(model, output_dir, config=model.config)  # remote code files + auto_map
    model.config.save_pretrained(output_dir)
    model.generation_config.save_pretrained(output_dir)


# ----------------------------------------------------------------------------------------------------------------
# The probe batch and the comparison


def probe_conversations() -> list[list[dict]]:
    """Two fixed chats, each with an image, a 1 s audio clip and a question (deterministic: seeded noise + tones)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    t = np.arange(16000, dtype=np.float32) / 16000
    questions = ("Describe the picture and the sound.", "What is two plus two?")
    chats = []
    for i, question in enumerate(questions):
        image = Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
        audio = (0.5 * np.sin(2 * np.pi * 220 * (i + 1) * t) + 0.05 * rng.standard_normal(16000)).astype(np.float32)
        content = [
            {"type": "image", "image": image},
            {"type": "audio", "audio": audio},
            {"type": "text", "text": question},
        ]
        chats.append([{"role": "user", "content": content}])
    return chats


def probe_batch(processor) -> dict:
    """[`probe_conversations`] through the processor: left-padded, thinking off, ready for `generate`."""
    processor.tokenizer.padding_side = "left"
    return processor.apply_chat_template(
        probe_conversations(),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        enable_thinking=False,
        processor_kwargs={"padding": True},
    )


@torch.no_grad()
def probe_outputs(model, inputs: dict, max_new_tokens: int = 16) -> dict:
    """The model's logits `[B, T, V]` on the probe batch and its `max_new_tokens` greedy tokens `[B, N]` (on CPU)."""
    moved = _to(inputs, model)
    logits = model(**moved).logits.float().cpu()
    greedy = {"do_sample": False, "max_new_tokens": max_new_tokens, "min_new_tokens": max_new_tokens}
    tokens = model.generate(**moved, **greedy)[:, inputs["input_ids"].shape[1] :].cpu()
    return {"logits": logits, "tokens": tokens}


def compare_probe_outputs(reference: dict, candidate: dict, attention_mask: torch.Tensor) -> dict:
    """Max |logit diff| over the real (unpadded) positions, and how far the greedy continuations agree."""
    mask = attention_mask.bool().cpu()  # [B, T]
    ref_tokens, cand_tokens = reference["tokens"], candidate["tokens"]
    return {
        "max_abs_logit_diff": (reference["logits"] - candidate["logits"]).abs()[mask].max().item(),
        "greedy_token_agreement": (ref_tokens == cand_tokens).float().mean().item(),
        "greedy_tokens_match": bool(torch.equal(ref_tokens, cand_tokens)),
    }


def compare_on_probe(reference, candidate, inputs: dict, max_new_tokens: int = 16) -> dict:
    """[`compare_probe_outputs`] for two loaded models."""
    ref, cand = probe_outputs(reference, inputs, max_new_tokens), probe_outputs(candidate, inputs, max_new_tokens)
    return compare_probe_outputs(ref, cand, inputs["attention_mask"])


def _to(inputs: dict, model) -> dict:
    device, dtype = model.device, model.dtype
    moved = {}
    for key, value in inputs.items():
        value = value.to(device)
        moved[key] = value.to(dtype) if value.is_floating_point() and dtype.is_floating_point else value
    return moved


def weights_bytes(path: str | Path) -> int:
    """Bytes of the weight files (`*.safetensors`) in a checkpoint directory."""
    return sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))


# ----------------------------------------------------------------------------------------------------------------
# The whole job


def quantize_checkpoint(
    model_dir: str | Path,
    output_dir: str | Path,
    bits: int = 8,
    backend: str = "auto",
    keep_towers_fp: bool = False,
    device: str | None = None,
    dtype: str = "auto",
    group_size: int = 64,
    probe_new_tokens: int = 16,
    allow_pickled_weights: bool = False,
    progress: bool = False,
) -> QuantizationReport:
    """Quantizes the checkpoint at `model_dir` into `output_dir` (model, processor, remote code, and
    `openmind_quantization.json` with the report), then reloads the output and compares it with the original.
    Only one model is in memory at a time: the original's probe outputs are taken first.

    Args:
        model_dir (`str` or `Path`): a saved OpenMind checkpoint (full precision).
        output_dir (`str` or `Path`): where to write the quantized checkpoint.
        bits (`int`, *optional*, defaults to 8): 8 or 4.
        backend (`str`, *optional*, defaults to `"auto"`): `auto`, `torchao`, `quanto` or `bnb` (see module doc).
        keep_towers_fp (`bool`, *optional*, defaults to `False`): keep vision/audio towers and projectors unquantized.
        device (`str`, *optional*): `cuda` for the CUDA-only paths (bnb, torchao int4); default CPU.
        dtype (`str`, *optional*, defaults to `"auto"`): dtype of the unquantized parts (e.g. `"bfloat16"`); `auto`
            keeps the checkpoint's (torchao int4 on CUDA always uses bfloat16).
        group_size (`int`, *optional*, defaults to 64): int4 group size for torchao (must divide the in-features).
        probe_new_tokens (`int`, *optional*, defaults to 16): greedy tokens compared; 0 skips the comparison.
        allow_pickled_weights (`bool`, *optional*, defaults to `False`): also read an original whose weights are only
            pickled (`pytorch_model.bin`); the output is always safetensors.
        progress (`bool`, *optional*, defaults to `False`): show a progress bar while quanto quantizes block by
            block (each stage is also logged at INFO on `openmind_hf.export.quantize`).
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import openmind_hf  # noqa: F401

    started = time.perf_counter()
    backend = resolve_backend(bits, backend, device)
    output_dir = Path(output_dir)
    if output_dir.resolve() == Path(model_dir).resolve():
        raise ValueError("--output must differ from --model: quantizing in place would destroy the original.")
    logger.info("[1/4] loading %s and running the probe batch (%d greedy tokens)", model_dir, probe_new_tokens)
    processor = AutoProcessor.from_pretrained(model_dir)
    inputs = probe_batch(processor)
    pickled = {"allow_pickled_weights": allow_pickled_weights}
    original = AutoModelForImageTextToText.from_pretrained(model_dir, dtype="auto", **pickled).eval()
    skip = full_precision_modules(original, keep_towers_fp)
    if probe_new_tokens > 0:
        reference = probe_outputs(original.to(device) if device else original, inputs, probe_new_tokens)
    del original
    logger.info("[2/4] quantizing to int%d with %s (full precision: %s)", bits, backend, ", ".join(skip))
    method = _quantize_and_save(
        model_dir, output_dir, backend, bits, skip, device, dtype, group_size, pickled, progress
    )
    logger.info("[3/4] saved to %s", output_dir)
    processor.save_pretrained(output_dir)
    report = QuantizationReport(
        backend=backend,
        bits=bits,
        method=method,
        kept_full_precision=skip,
        original_weights_bytes=weights_bytes(model_dir),
        quantized_weights_bytes=weights_bytes(output_dir),
        probe_new_tokens=probe_new_tokens,
    )
    if probe_new_tokens > 0:
        logger.info("[4/4] reloading %s and comparing it with the original on the probe batch", output_dir)
        candidate = probe_outputs(load_model_for_inference(output_dir, device=device), inputs, probe_new_tokens)
        for key, value in compare_probe_outputs(reference, candidate, inputs["attention_mask"]).items():
            setattr(report, key, value)
    if "int8 storage" in method:
        report.notes.append("torchao has no packed int4 layout on CPU; use --backend quanto for int4-sized files.")
    report.seconds = time.perf_counter() - started
    (output_dir / RECORD_FILE).write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def _quantize_and_save(
    model_dir, output_dir: Path, backend, bits, skip, device, dtype, group_size, pickled, progress=False
) -> str:
    """Loads `model_dir`, quantizes it with `backend`, saves it to `output_dir`; returns the method's description."""
    from transformers import AutoModelForImageTextToText

    load_kwargs = {"device_map": device, **pickled} if device else dict(pickled)
    dtype = as_torch_dtype(dtype) or "auto"
    if backend == "quanto":
        model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype, **load_kwargs).eval()
        model, method = quantize_with_quanto(model, bits, skip, progress=progress)
        save_quanto(model, output_dir)
        return method
    config, method = transformers_quantization_config(backend, bits, skip, device, group_size)
    if backend == "torchao" and bits == 4 and _is_cuda(device):
        dtype = torch.bfloat16  # the tinygemm int4 kernel takes bf16 activations only
    model = AutoModelForImageTextToText.from_pretrained(
        model_dir, quantization_config=config, dtype=dtype, **load_kwargs
    )
    model.save_pretrained(output_dir)
    return method


def quantize_with_quanto(model, bits: int, skip: list[str], progress: bool = False):
    """Quantizes `model` in place with optimum-quanto (weights only) and freezes it; returns it and a description.
    Modules named in `skip` (and everything under them) stay in full precision. Works one block (an entry of a
    `ModuleList`, e.g. a decoder layer) at a time, with a progress bar when `progress` is set: freezing a large model
    takes minutes."""
    from optimum.quanto import freeze, qint4, qint8, quantize
    from tqdm.auto import tqdm

    qtype = qint8 if bits == 8 else qint4
    # fnmatch patterns: the module itself and everything under it.
    exclude = [pattern for name in skip for pattern in (name, f"{name}.*")]
    blocks = quantizable_blocks(model, skip)
    for block in tqdm(blocks, desc=f"quantizing to {qtype.name}", unit="block", disable=not progress):
        quantize(model, weights=qtype, include=[block, f"{block}.*"], exclude=exclude)
        freeze(model.get_submodule(block))  # replaces float weights by their quantized form: int data in the state
    # What no block holds: embeddings' neighbours, projectors, heads outside `skip`.
    quantize(model, weights=qtype, exclude=exclude + [pattern for b in blocks for pattern in (b, f"{b}.*")])
    freeze(model)
    return model, f"optimum-quanto {qtype.name} weights"


def quantizable_blocks(model, skip: list[str]) -> list[str]:
    """Names of the entries of the outermost `ModuleList`s (decoder / encoder layers) outside `skip`."""
    blocks = []
    for name, module in model.named_modules():
        inside = any(name == s or name.startswith(f"{s}.") for s in skip) or any(
            name.startswith(f"{b}.") for b in blocks
        )
        if isinstance(module, torch.nn.ModuleList) and not inside:
            blocks += [f"{name}.{index}" for index in range(len(module))]
    return blocks


__all__ = [
    "QuantizationReport",
    "quantize_checkpoint",
    "save_quanto",
    "quantize_with_quanto",
    "quantizable_blocks",
    "resolve_backend",
    "full_precision_modules",
    "transformers_quantization_config",
    "probe_conversations",
    "probe_batch",
    "compare_on_probe",
    "probe_outputs",
    "compare_probe_outputs",
    "weights_bytes",
    "TOWER_MODULES",
    "RECORD_FILE",
]
