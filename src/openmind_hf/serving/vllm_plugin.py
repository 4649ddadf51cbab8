"""vLLM plugin: serves OpenMind checkpoints through vLLM's transformers backend, with two adaptations.

vLLM loads this module through the `vllm.general_plugins` entry point (see `pyproject.toml`) in every process it
starts, so `vllm serve DIR --trust-remote-code` picks up OpenMind without any flag. The model itself still runs
from the checkpoint's own `modeling_openmind.py` (its attention goes through transformers'
`ALL_ATTENTION_FUNCTIONS`, which vLLM fills with its paged attention); this module only registers the architecture
name with a subclass of vLLM's `TransformersMultiModalForCausalLM` that:

1. concatenates the per-clip audio features: OpenMind's `get_audio_features` returns one tensor per clip (each cut
   to the clip's real length), while vLLM's `_split_embeddings` expects a single tensor;
2. routes `feature_attention_mask` with the audio: vLLM attributes processor outputs to a modality by the
   sub-processor's `model_input_names` (`input_features` for Whisper's extractor), so in a request with both an image
   and an audio clip the mask would be dropped and every clip would fill the padded window's token count.

Nothing here is imported outside vLLM, and it imports vLLM lazily so that loading the plugin is cheap.
"""

from __future__ import annotations

ARCHITECTURE = "OpenMindForConditionalGeneration"


def register() -> None:
    """Registers OpenMind's architecture with vLLM (idempotent: vLLM calls plugins once per process)."""
    from vllm import ModelRegistry

    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(
            ARCHITECTURE, "openmind_hf.serving.vllm_model:OpenMindVllmForConditionalGeneration"
        )


__all__ = ["ARCHITECTURE", "register"]
