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

from .components import build_from_components, model_from_components
from .inference import is_quanto_checkpoint, load_model_for_inference, load_quantized
from .presets import build_tiny_preset, load_tiny_tokenizer, tiny_config
from .processor import build_processor, set_generation_defaults
from .reward import load_reward_model, to_reward_model
from .vocabulary import add_openmind_tokens, resize_with_mean_rows

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
