"""Ready-made OpenMind builds: the tiny CPU preset, and a new model composed from pretrained parts.

openmind preset tiny --output DIR        # or: build_tiny_preset("DIR")
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import (
    CLIPImageProcessorPil,
    PreTrainedTokenizerFast,
    Qwen2Config,
    SiglipImageProcessorPil,
    SiglipVisionConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
)

from .modeling.configuration_openmind import OpenMindConfig
from .modeling.modeling_openmind import OpenMindForConditionalGeneration
from .processing.chat_template import CHAT_TEMPLATE
from .processing.processing_openmind import OpenMindProcessor

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<audio>", "<video>")
THINK_TOKENS = ("<think>", "</think>")
TINY_TOKENIZER = Path(__file__).with_name("assets") / "tiny_tokenizer" / "tokenizer.json"


def load_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """The bundled byte-level BPE tokenizer (~650 tokens), trained offline by `scripts/build_tiny_tokenizer.py`."""
    return PreTrainedTokenizerFast(
        tokenizer_file=str(TINY_TOKENIZER),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "audio_token": "<audio>", "video_token": "<video>"},
        model_max_length=4096,
    )


def build_processor(
    config: OpenMindConfig, tokenizer, image_processor=None, feature_extractor=None
) -> OpenMindProcessor:
    """An `OpenMindProcessor` whose token counts agree with `config`."""
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


def token_ids(tokenizer) -> dict[str, int]:
    vocab = tokenizer.get_vocab()
    return {
        "image_token_id": vocab["<image>"],
        "audio_token_id": vocab["<audio>"],
        "video_token_id": vocab["<video>"],
        "think_start_token_id": vocab["<think>"],
        "think_end_token_id": vocab["</think>"],
    }


def tiny_config(tokenizer=None, **overrides) -> OpenMindConfig:
    """A ~0.3M-parameter config: SigLIP 32 px (16 image tokens), a 2 s Whisper encoder, a 2-layer Qwen2 LM."""
    tokenizer = tokenizer or load_tiny_tokenizer()
    vocab = tokenizer.get_vocab()
    vision = SiglipVisionConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
    )
    # Only the encoder is used; the decoder fields just have to be valid for a tiny vocabulary.
    audio = WhisperConfig(
        d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128, num_mel_bins=40,
        max_source_positions=100, decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64,
        vocab_size=16, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        max_target_positions=16, suppress_tokens=None, begin_suppress_tokens=None,
    )  # fmt: skip
    text = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
        pad_token_id=vocab["<|endoftext|>"], bos_token_id=None, eos_token_id=vocab["<|im_end|>"],
    )  # fmt: skip
    kwargs = {
        "vision_config": vision,
        "audio_config": audio,
        "text_config": text,
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "full",
        "audio_pool_stride": 4,
        "video_max_frames": 4,
        "video_temporal_pool": 2,
        "tie_word_embeddings": True,
        **token_ids(tokenizer),
        **overrides,
    }
    return OpenMindConfig(**kwargs)


def set_generation_defaults(model, tokenizer) -> None:
    """Stop at `<|im_end|>`, and never generate a media placeholder: a generated `<video>` would have no features
    when the sequence is scored again (RL loss, evaluation), so it must not be sampled in the first place."""
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    model.generation_config.suppress_tokens = [
        tokenizer.convert_tokens_to_ids(t) for t in ("<image>", "<audio>", "<video>")
    ]


def build_tiny_preset(output_dir: str | Path | None = None, seed: int = 0, **config_overrides):
    """Builds (and saves, when `output_dir` is given) a tiny random OpenMind model and its processor. ~1 s on CPU."""
    tokenizer = load_tiny_tokenizer()
    config = tiny_config(tokenizer, **config_overrides)
    torch.manual_seed(seed)
    model = OpenMindForConditionalGeneration(config).eval()
    set_generation_defaults(model, tokenizer)
    processor = build_processor(config, tokenizer)
    if output_dir is not None:
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
    return model, processor


def build_from_components(
    vision: str | None = None,
    audio: str | None = None,
    text: str = "",
    projector: str = "mlp",
    output_dir: str | Path | None = None,
    **config_kwargs,
):
    """A NEW OpenMind model from pretrained towers (Hub ids or local dirs) plus its processor; see
    [`OpenMindForConditionalGeneration.from_pretrained_components`]."""
    from transformers import AutoImageProcessor, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(text)
    model = OpenMindForConditionalGeneration.from_pretrained_components(
        vision=vision, audio=audio, text=text, projector=projector, tokenizer=tokenizer, **config_kwargs
    )
    image_processor = feature_extractor = None
    if vision is not None:
        loaded = AutoImageProcessor.from_pretrained(vision, backend="pil")
        pil_class = CLIPImageProcessorPil if "clip" in type(loaded).__name__.lower() else SiglipImageProcessorPil
        image_processor = loaded if "Pil" in type(loaded).__name__ else pil_class(**loaded.to_dict())
    if audio is not None:
        feature_extractor = WhisperFeatureExtractor.from_pretrained(audio)
    set_generation_defaults(model, tokenizer)
    processor = build_processor(model.config, tokenizer, image_processor, feature_extractor)
    if output_dir is not None:
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
    return model, processor


# `openmind preset ...`
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=["tiny"], help="preset to build")
    parser.add_argument("--output", required=True, help="directory to save the model and processor in")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    model, _ = build_tiny_preset(args.output, seed=args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"Saved the '{args.name}' preset ({n_params / 1e6:.2f}M parameters) to {args.output}")
    return 0


__all__ = ["build_tiny_preset", "build_from_components", "tiny_config", "build_processor", "load_tiny_tokenizer"]
