"""Where an OpenMind model is built: everything that makes a model object, as opposed to defining its classes
(`modeling/`) or training it (`training/`).

- `presets.py`: the tiny preset (random weights, bundled tokenizer); also `openmind preset` (`commands.py`).
- `components.py`: a NEW model composed from pretrained towers and an LM (Hub ids or directories).
- `vocabulary.py`: the OpenMind tokens added to a tokenizer, and embeddings grown with mean rows.
- `processor.py`: the matching `OpenMindProcessor` and generation defaults every built model gets.
- `inference.py`: loading any checkpoint (plain or quantized) for inference; safetensors only unless opted in.
- `reward.py`: the reward model, converted from a causal LM or loaded from a checkpoint.

Uses `modeling/` and `processing/` only; training, evaluation, serving and export use it.
"""

import importlib

# public name -> submodule; imported on first use (they import torch and transformers, `openmind preset --help`
# and `import openmind_hf.building.commands` must not).
_LAZY_NAMES = {
    **dict.fromkeys(("build_from_components", "model_from_components"), ".components"),
    **dict.fromkeys(("is_quanto_checkpoint", "load_model_for_inference", "load_quantized"), ".inference"),
    **dict.fromkeys(("build_tiny_preset", "load_tiny_tokenizer", "tiny_config"), ".presets"),
    **dict.fromkeys(("build_processor", "set_generation_defaults"), ".processor"),
    **dict.fromkeys(("load_reward_model", "to_reward_model"), ".reward"),
    **dict.fromkeys(("add_openmind_tokens", "resize_with_mean_rows"), ".vocabulary"),
}


def __getattr__(name: str):
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY_NAMES[name], __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))


__all__ = [
    "add_openmind_tokens",
    "build_from_components",
    "build_processor",
    "build_tiny_preset",
    "is_quanto_checkpoint",
    "load_model_for_inference",
    "load_quantized",
    "load_reward_model",
    "load_tiny_tokenizer",
    "model_from_components",
    "resize_with_mean_rows",
    "set_generation_defaults",
    "tiny_config",
    "to_reward_model",
]
