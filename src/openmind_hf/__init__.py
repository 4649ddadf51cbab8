"""OpenMind: a vision + audio + text chat model that can think, native to Hugging Face.

Importing this package registers the OpenMind classes with the transformers Auto classes, and marks them for
`trust_remote_code` export: `save_pretrained` writes the code files and `auto_map`, so a checkpoint also loads
where OpenMind is not installed.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    AutoModelForMultimodalLM,
    AutoModelForSequenceClassification,
    AutoProcessor,
)

from .modeling.configuration_openmind import OpenMindConfig
from .modeling.modeling_openmind import (
    OpenMindForConditionalGeneration,
    OpenMindForSequenceClassification,
    OpenMindModel,
    OpenMindPreTrainedModel,
)
from .processing.processing_openmind import OpenMindProcessor

AutoConfig.register("openmind", OpenMindConfig, exist_ok=True)
AutoModel.register(OpenMindConfig, OpenMindModel, exist_ok=True)
AutoModelForImageTextToText.register(OpenMindConfig, OpenMindForConditionalGeneration, exist_ok=True)
AutoModelForMultimodalLM.register(OpenMindConfig, OpenMindForConditionalGeneration, exist_ok=True)
AutoModelForSequenceClassification.register(OpenMindConfig, OpenMindForSequenceClassification, exist_ok=True)
AutoProcessor.register(OpenMindConfig, OpenMindProcessor, exist_ok=True)

OpenMindConfig.register_for_auto_class()
OpenMindModel.register_for_auto_class("AutoModel")
OpenMindForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
OpenMindForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
OpenMindProcessor.register_for_auto_class()

from .building import build_from_components, build_tiny_preset  # noqa: E402

__version__ = "0.1.0"

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
