"""A NEW OpenMind model composed from pretrained parts: a CLIP/SigLIP vision tower, a Whisper/Qwen2-Audio audio
tower and a causal LM (Hub ids or local directories), with fresh projectors.

    model, processor = build_from_components(vision="google/siglip-base-patch16-224", audio="openai/whisper-small",
                                             text="Qwen/Qwen2.5-0.5B-Instruct", output_dir="openmind-base")

This is the one place that reads towers from the Hub: `modeling/` only builds from configs (house rule 3).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel

from ..modeling.configuration_openmind import OpenMindConfig
from ..modeling.modeling_openmind import OpenMindForConditionalGeneration
from .processor import build_processor, set_generation_defaults
from .vocabulary import add_openmind_tokens, resize_with_mean_rows


def load_vision_tower(path: str) -> nn.Module:
    """The vision model of a CLIP/SigLIP checkpoint, full (vision + text) or vision-only."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    config = AutoConfig.from_pretrained(path)
    vision_config = getattr(config, "vision_config", config)
    return MODEL_MAPPING[type(vision_config)].from_pretrained(path, dtype=torch.float32)


def load_audio_tower(path: str) -> nn.Module:
    """The audio encoder of a Whisper checkpoint, a Qwen2-Audio checkpoint or a bare Qwen2-Audio encoder."""
    model_type = AutoConfig.from_pretrained(path).model_type
    if model_type == "whisper":
        from transformers import WhisperModel

        return WhisperModel.from_pretrained(path, dtype=torch.float32).get_encoder()
    if model_type == "qwen2_audio":
        from transformers import Qwen2AudioForConditionalGeneration

        return Qwen2AudioForConditionalGeneration.from_pretrained(path, dtype=torch.float32).audio_tower
    if model_type == "qwen2_audio_encoder":
        return AutoModel.from_pretrained(path, dtype=torch.float32)
    raise ValueError(f"{path}: audio tower of type {model_type!r} is not supported (use whisper or qwen2_audio).")


def _require_text(text: str) -> None:
    if not text:
        raise ValueError("Building from components needs `text`: a causal LM checkpoint (Hub id or directory).")


def model_from_components(
    vision: str | None = None,
    audio: str | None = None,
    text: str = "",
    projector: str = "mlp",
    tokenizer=None,
    **config_kwargs,
) -> OpenMindForConditionalGeneration:
    r"""
    Builds a NEW OpenMind model from pretrained towers (Hub ids or local directories).

    Tower and LM weights load strictly (a missing or misshaped key raises); the projectors start fresh.
    `tokenizer` (the text model's, loaded from `text` when omitted) gains `<image>`, `<audio>`, `<video>`,
    `<think>` and `</think>` in place; new embedding (and untied head) rows start at the mean of the old rows.

    Args:
        vision (`str`, *optional*): a CLIP/SigLIP checkpoint (full or vision-only). `None`: no vision tower.
        audio (`str`, *optional*): a Whisper or Qwen2-Audio checkpoint. `None`: no audio tower.
        text (`str`): a causal LM checkpoint.
        projector (`str`, *optional*, defaults to `"mlp"`): `"mlp"` or `"pixel_shuffle"`.
        tokenizer (`PreTrainedTokenizerBase`, *optional*): extended in place with the special tokens.
        config_kwargs: any other [`OpenMindConfig`] field.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _require_text(text)
    tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(text)
    add_openmind_tokens(tokenizer)
    vision_tower = load_vision_tower(vision) if vision is not None else None
    audio_tower = load_audio_tower(audio) if audio is not None else None
    lm = AutoModelForCausalLM.from_pretrained(text, dtype=torch.float32)
    if len(tokenizer) > lm.config.vocab_size:
        resize_with_mean_rows(lm, len(tokenizer))
    vocab = tokenizer.get_vocab()
    config = OpenMindConfig(
        vision_config=vision_tower.config if vision_tower is not None else None,
        audio_config=audio_tower.config if audio_tower is not None else None,
        text_config=lm.config,
        vision_projector_type=projector,
        image_token_id=vocab["<image>"] if vision is not None else None,
        video_token_id=vocab["<video>"] if vision is not None else None,
        audio_token_id=vocab["<audio>"] if audio is not None else None,
        think_start_token_id=vocab["<think>"],
        think_end_token_id=vocab["</think>"],
        tie_word_embeddings=bool(getattr(lm.config, "tie_word_embeddings", False)),
        **config_kwargs,
    )
    model = OpenMindForConditionalGeneration(config)
    pairs = [(model.model.language_model, lm.get_decoder()), (model.lm_head, lm.get_output_embeddings())]
    pairs += [(model.model.vision_tower, vision_tower), (model.model.audio_tower, audio_tower)]
    for target, source in pairs:
        if source is not None:
            target.load_state_dict(source.state_dict(), strict=True)  # raises on any missing/extra/misshaped key
    model.tie_weights()
    return model


def _image_processor(vision: str):
    """The vision checkpoint's image processor, as its PIL-backend class (what `OpenMindProcessor` takes)."""
    from transformers import AutoImageProcessor, CLIPImageProcessorPil, SiglipImageProcessorPil

    loaded = AutoImageProcessor.from_pretrained(vision, backend="pil")
    if "Pil" in type(loaded).__name__:
        return loaded
    pil_class = CLIPImageProcessorPil if "clip" in type(loaded).__name__.lower() else SiglipImageProcessorPil
    return pil_class(**loaded.to_dict())


def build_from_components(
    vision: str | None = None,
    audio: str | None = None,
    text: str = "",
    projector: str = "mlp",
    output_dir: str | Path | None = None,
    **config_kwargs,
):
    """A NEW OpenMind model from pretrained towers plus its processor (tokenizer, image processor and feature
    extractor of the parts); see [`model_from_components`] for the arguments. Saves both when `output_dir` is given.

    Returns:
        `(OpenMindForConditionalGeneration, OpenMindProcessor)`.
    """
    from transformers import AutoTokenizer, WhisperFeatureExtractor

    _require_text(text)
    tokenizer = AutoTokenizer.from_pretrained(text)
    model = model_from_components(
        vision=vision, audio=audio, text=text, projector=projector, tokenizer=tokenizer, **config_kwargs
    )
    image_processor = _image_processor(vision) if vision is not None else None
    feature_extractor = WhisperFeatureExtractor.from_pretrained(audio) if audio is not None else None
    set_generation_defaults(model, tokenizer)
    processor = build_processor(model.config, tokenizer, image_processor, feature_extractor)
    if output_dir is not None:
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
    return model, processor


__all__ = ["build_from_components", "load_audio_tower", "load_vision_tower", "model_from_components"]
