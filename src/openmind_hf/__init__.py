"""OpenMind: a vision + audio + text chat model that can think, native to Hugging Face.

Importing this package registers the OpenMind classes with the transformers Auto classes, and marks them for
`trust_remote_code` export: `save_pretrained` writes the code files and `auto_map`, so a checkpoint also loads
where OpenMind is not installed. The import itself is instant: torch and transformers load (and the classes get
registered) when transformers is first imported, or when a name below is first used (see `_registration.py`).
"""

import importlib

from ._registration import register_auto_classes, register_when_cheap

__version__ = "0.1.0"

# public name -> module that defines it; imported on first access.
_LAZY_NAMES = {
    "OpenMindConfig": ".modeling.configuration_openmind",
    "OpenMindModel": ".modeling.modeling_openmind",
    "OpenMindPreTrainedModel": ".modeling.modeling_openmind",
    "OpenMindForConditionalGeneration": ".modeling.modeling_openmind",
    "OpenMindForSequenceClassification": ".modeling.modeling_openmind",
    "OpenMindProcessor": ".processing.processing_openmind",
    "build_tiny_preset": ".building.presets",
    "build_from_components": ".building.components",
}


def __getattr__(name: str):
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module 'openmind_hf' has no attribute {name!r}")
    register_auto_classes()
    value = getattr(importlib.import_module(_LAZY_NAMES[name], __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))


register_when_cheap()

__all__ = [
    "OpenMindConfig",
    "OpenMindModel",
    "OpenMindPreTrainedModel",
    "OpenMindForConditionalGeneration",
    "OpenMindForSequenceClassification",
    "OpenMindProcessor",
    "build_tiny_preset",
    "build_from_components",
]
