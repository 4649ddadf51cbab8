"""Building the model a stage trains: from a checkpoint, a preset, or pretrained towers; then freezing and LoRA.

Parameter groups ("towers") are named by where a parameter lives:

- `vision`: `model.vision_tower.*`
- `audio`: `model.audio_tower.*`
- `projectors`: `model.multi_modal_projector.*`, `model.audio_projector.*`
- `llm`: `model.language_model.*`, `lm_head.*`
- `head`: `score.*` (the reward model's scalar head; always trains)
"""

from __future__ import annotations

import logging
from collections import Counter

import torch
from torch import nn

from .arguments import DEFAULT_LORA_TARGETS, ModelArguments

logger = logging.getLogger(__name__)

# Stage defaults for `freeze_*` flags left unset. Stage 1 aligns the projectors only (LLaVA); later stages train
# the LM and projectors on top of frozen towers, the usual fine-tuning recipe for large pretrained towers.
STAGE_FREEZE_DEFAULTS: dict[str, dict[str, bool]] = {
    "pretrain": {"vision": True, "audio": True, "llm": True, "projectors": False},
    "sft": {"vision": True, "audio": True, "llm": False, "projectors": False},
    "dpo": {"vision": True, "audio": True, "llm": False, "projectors": False},
    "reward": {"vision": True, "audio": True, "llm": False, "projectors": False},
    "grpo": {"vision": True, "audio": True, "llm": False, "projectors": False},
}
_TOWER_MODULES = {
    "vision_tower": "vision",
    "audio_tower": "audio",
    "multi_modal_projector": "projectors",
    "audio_projector": "projectors",
    "language_model": "llm",
    "lm_head": "llm",
    "score": "head",
}
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def tower_of(parameter_name: str) -> str:
    """`"base_model.model.model.vision_tower.encoder..."` -> `"vision"`. Works through PEFT and DDP prefixes."""
    for part in parameter_name.split("."):
        if part in _TOWER_MODULES:
            return _TOWER_MODULES[part]
    raise ValueError(f"Parameter {parameter_name!r} belongs to no known OpenMind tower; cannot assign it a group.")


def resolve_freezing(model_args: ModelArguments, stage: str) -> dict[str, bool]:
    defaults = STAGE_FREEZE_DEFAULTS[stage]
    chosen = {
        "vision": model_args.freeze_vision,
        "audio": model_args.freeze_audio,
        "llm": model_args.freeze_llm,
        "projectors": model_args.freeze_projectors,
    }
    return {tower: defaults[tower] if value is None else value for tower, value in chosen.items()}


def apply_freezing(model: nn.Module, frozen: dict[str, bool]) -> None:
    """Sets `requires_grad` per tower. The reward head (`score`) always trains."""
    for name, parameter in model.named_parameters():
        tower = tower_of(name)
        parameter.requires_grad_(tower == "head" or not frozen.get(tower, False))


def trainable_summary(model: nn.Module) -> dict[str, dict[str, int]]:
    """`{tower: {"trainable": n, "total": n}}` in parameters, for the log and the run summary."""
    total, trainable = Counter(), Counter()
    for name, parameter in model.named_parameters():
        tower = "lora" if "lora_" in name else tower_of(name)
        total[tower] += parameter.numel()
        if parameter.requires_grad:
            trainable[tower] += parameter.numel()
    return {tower: {"trainable": trainable[tower], "total": total[tower]} for tower in total}


def _check_qlora(model_args: ModelArguments) -> None:
    if not torch.cuda.is_available():
        raise RuntimeError(
            "QLoRA (--load_in_4bit) needs a CUDA GPU: bitsandbytes 4-bit kernels do not train on CPU. "
            "On CPU use --use_lora without --load_in_4bit (or full fine-tuning of a small model)."
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise RuntimeError("QLoRA needs bitsandbytes: pip install bitsandbytes") from err
    if model_args.model_name_or_path is None:
        raise ValueError("QLoRA quantizes while loading: give --model_name_or_path (an OpenMind checkpoint).")


def _quantization_config(model_args: ModelArguments):
    from transformers import BitsAndBytesConfig

    # Only the LM is quantized: towers, projectors and the head stay in high precision (they are small, and the
    # projectors usually train).
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=model_args.bnb_4bit_quant_type,
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
        llm_int8_skip_modules=[
            "vision_tower",
            "audio_tower",
            "multi_modal_projector",
            "audio_projector",
            "lm_head",
            "score",
        ],
    )


def load_model_and_processor(
    model_args: ModelArguments, *, reward_head: bool = False, seed: int = 0, trust_remote_code: bool = False
):
    """The model (causal LM, or the reward model when `reward_head`) and its processor, from the chosen source.
    The building itself lives in `openmind_hf.building`; this maps the training arguments onto it."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import openmind_hf  # noqa: F401  (registers the Auto classes)

    from ..building import build_from_components, load_reward_model, to_reward_model

    dtype = _DTYPES[model_args.dtype]
    if not model_args.has_source:
        raise ValueError("No model given: pass --model_name_or_path DIR, --preset tiny, or --text_model ID.")
    if model_args.load_in_4bit:
        _check_qlora(model_args)
    if model_args.model_name_or_path is not None:
        path = model_args.model_name_or_path
        kwargs = {"dtype": dtype, "trust_remote_code": trust_remote_code}
        if model_args.attn_implementation:
            kwargs["attn_implementation"] = model_args.attn_implementation
        if model_args.load_in_4bit:
            kwargs["quantization_config"] = _quantization_config(model_args)
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
        if reward_head:
            model = load_reward_model(path, **kwargs)
        else:
            model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        return model, processor

    if model_args.text_model is None:
        from ..building.presets import build_preset  # raises on an unknown preset name, listing the presets

        model, processor = build_preset(model_args.preset, seed=seed, **model_args.preset_overrides)
    else:
        model, processor = build_from_components(
            vision=model_args.vision_model,
            audio=model_args.audio_model,
            text=model_args.text_model,
            projector=model_args.projector,
        )
    if model_args.attn_implementation:
        model.set_attn_implementation(model_args.attn_implementation)
    if dtype not in ("auto", torch.float32):
        model = model.to(dtype)
    if reward_head:
        model = to_reward_model(model)
    return model.train(), processor


def lora_config(model_args: ModelArguments, frozen: dict[str, bool], reward_head: bool = False):
    """A `peft.LoraConfig` on the LM only (by default). Unfrozen towers/projectors train fully as `modules_to_save`,
    so they are saved with the adapter."""
    from peft import LoraConfig

    targets = model_args.lora_target_modules
    if not targets:
        targets = DEFAULT_LORA_TARGETS
    elif len(targets) == 1 and any(c in targets[0] for c in "*|()$"):
        targets = targets[0]  # one regex
    modules_to_save = []
    if not frozen["projectors"]:
        modules_to_save += ["multi_modal_projector", "audio_projector"]
    if not frozen["vision"]:
        modules_to_save.append("vision_tower")
    if not frozen["audio"]:
        modules_to_save.append("audio_tower")
    if reward_head:
        modules_to_save.append("score")
    return LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=targets,
        modules_to_save=modules_to_save or None,
        bias="none",
    )


def prepare_model(
    model_args: ModelArguments,
    stage: str,
    seed: int = 0,
    gradient_checkpointing: bool = False,
    trust_remote_code: bool = False,
):
    """Loads the model and processor and applies freezing and LoRA.

    Returns:
        `(model, processor, frozen)`: `model` is a `PeftModel` when `use_lora`; `frozen` maps tower -> bool.
    """
    reward_head = stage == "reward"
    model, processor = load_model_and_processor(
        model_args, reward_head=reward_head, seed=seed, trust_remote_code=trust_remote_code
    )
    frozen = resolve_freezing(model_args, stage)
    if model_args.use_lora:
        from peft import get_peft_model, prepare_model_for_kbit_training

        if model_args.load_in_4bit:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
        apply_freezing(model, {**frozen, "llm": True})
        model = get_peft_model(model, lora_config(model_args, frozen, reward_head))
    else:
        apply_freezing(model, frozen)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("Every parameter is frozen: unfreeze a tower (--freeze_* false) or use --use_lora.")
    for tower, counts in trainable_summary(model).items():
        logger.info("%-10s trainable %d / %d parameters", tower, counts["trainable"], counts["total"])
    return model, processor, frozen


__all__ = [
    "STAGE_FREEZE_DEFAULTS",
    "apply_freezing",
    "load_model_and_processor",
    "lora_config",
    "prepare_model",
    "resolve_freezing",
    "tower_of",
    "trainable_summary",
]
