"""The vLLM model class for OpenMind: vLLM's transformers backend plus the two adaptations in `vllm_plugin`.

Imported only by vLLM (through the lazy registration in [`~openmind_hf.serving.vllm_plugin.register`]).
"""

from __future__ import annotations

import torch
from vllm.model_executor.models.transformers import (
    MultiModalDummyInputsBuilder,
    MultiModalProcessingInfo,
    MultiModalProcessor,
    TransformersMultiModalForCausalLM,
)
from vllm.multimodal import MULTIMODAL_REGISTRY


class OpenMindVllmProcessor(MultiModalProcessor):
    """vLLM's generic multimodal processor; `feature_attention_mask` belongs to the audio items."""

    def _get_modality_field_names(self, modality: str) -> set[str]:
        names = super()._get_modality_field_names(modality)
        if modality == "audio":
            names.add("feature_attention_mask")  # [num_clips, mel_frames]: each clip's real length
        return names


@MULTIMODAL_REGISTRY.register_processor(
    OpenMindVllmProcessor, info=MultiModalProcessingInfo, dummy_inputs=MultiModalDummyInputsBuilder
)
class OpenMindVllmForConditionalGeneration(TransformersMultiModalForCausalLM):
    """vLLM's transformers backend for OpenMind checkpoints (loaded with `trust_remote_code`)."""

    def _split_embeddings(self, embeddings, split_sizes: list[int]) -> list[torch.Tensor]:
        # OpenMind's audio `pooler_output` is a tuple of [tokens_i, D] tensors, one per clip.
        if isinstance(embeddings, (tuple, list)):
            embeddings = torch.cat(list(embeddings))
        return super()._split_embeddings(embeddings, split_sizes)


__all__ = ["OpenMindVllmForConditionalGeneration", "OpenMindVllmProcessor"]
