"""What every built model gets: a processor whose token counts agree with its config, and generation defaults."""

from __future__ import annotations

from transformers import SiglipImageProcessorPil, WhisperFeatureExtractor

from ..modeling.configuration_openmind import OpenMindConfig
from ..processing.chat_template import CHAT_TEMPLATE
from ..processing.processing_openmind import OpenMindProcessor


def build_processor(
    config: OpenMindConfig, tokenizer, image_processor=None, feature_extractor=None
) -> OpenMindProcessor:
    """An `OpenMindProcessor` whose token counts agree with `config`.

    Args:
        config (`OpenMindConfig`): the model's config (image size, audio window, token counts).
        tokenizer (`PreTrainedTokenizerBase`): holds `<image>`, `<audio>`, `<video>`, `<think>` and `</think>`.
        image_processor (`BaseImageProcessor`, *optional*): defaults to a SigLIP processor at the tower's size.
        feature_extractor (`WhisperFeatureExtractor`, *optional*): defaults to one matching the audio tower.
    """
    if image_processor is None:
        side = config.vision_config.image_size if config.vision_config is not None else 32
        image_processor = SiglipImageProcessorPil(size={"height": side, "width": side})
    if feature_extractor is None:
        audio = config.audio_config
        window_s = audio.max_source_positions * 2 // 100 if audio is not None else 30
        mels = audio.num_mel_bins if audio is not None else 80
        feature_extractor = WhisperFeatureExtractor(feature_size=mels, chunk_length=window_s)
    return OpenMindProcessor(
        image_processor=image_processor,
        feature_extractor=feature_extractor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        num_image_tokens=config.num_image_tokens,
        audio_model_type=config.audio_config.model_type if config.audio_config is not None else None,
        audio_pool_stride=config.audio_pool_stride,
        video_max_frames=config.video_max_frames,
        video_temporal_pool=config.video_temporal_pool,
    )


def set_generation_defaults(model, tokenizer) -> None:
    """Stop at `<|im_end|>`, and never generate a media placeholder: a generated `<video>` would have no features
    when the sequence is scored again (RL loss, evaluation), so it must not be sampled in the first place."""
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    model.generation_config.suppress_tokens = [
        tokenizer.convert_tokens_to_ids(t) for t in ("<image>", "<audio>", "<video>")
    ]


__all__ = ["build_processor", "set_generation_defaults"]
