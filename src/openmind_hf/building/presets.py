"""The presets: random OpenMind models and their processors, built offline with the bundled tokenizer.

- `tiny` (~0.3M parameters, about a second to build): tests, the demo and the benchmarks start from it.
- `small` (~25M parameters): learns a few hundred real images in minutes on CPU.

    openmind preset tiny --output DIR        # or: build_tiny_preset("DIR"), build_preset("small", "DIR")

Both scale the language model's initialisation to its width (std = hidden_size**-0.5, not transformers' 0.02, which
is tuned for width ~768): at width 64, 0.02 makes every logit ~0, and on 384 real texture patches the tiny preset
spent its first ~60 steps learning which words answer at all (held-out 0.64 at step 60 and never answering one of the
three classes, against 0.81 with the scaled init; tests/test_training_real_images.py). The projectors take the same
std (transformers' default init reads the text config's).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast, Qwen2Config, SiglipVisionConfig, WhisperConfig

from ..modeling.configuration_openmind import OpenMindConfig
from ..modeling.modeling_openmind import OpenMindForConditionalGeneration
from .processor import build_processor, set_generation_defaults

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<audio>", "<video>")
THINK_TOKENS = ("<think>", "</think>")
TINY_TOKENIZER = Path(__file__).parent.parent / "assets" / "tiny_tokenizer" / "tokenizer.json"
PRESETS = ("tiny", "small")


def load_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """The bundled byte-level BPE tokenizer (~650 tokens), trained offline by `scripts/build_tiny_tokenizer.py`."""
    return PreTrainedTokenizerFast(
        tokenizer_file=str(TINY_TOKENIZER),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "audio_token": "<audio>", "video_token": "<video>"},
        model_max_length=4096,
    )


def token_ids(tokenizer) -> dict[str, int]:
    """The config's token-id fields, read from `tokenizer`'s vocabulary."""
    vocab = tokenizer.get_vocab()
    return {
        "image_token_id": vocab["<image>"],
        "audio_token_id": vocab["<audio>"],
        "video_token_id": vocab["<video>"],
        "think_start_token_id": vocab["<think>"],
        "think_end_token_id": vocab["</think>"],
    }


def tiny_config(tokenizer=None, init_std: float | None = None, **overrides) -> OpenMindConfig:
    """A ~0.3M-parameter config: SigLIP 32 px (16 image tokens), a 2 s Whisper encoder, a 2-layer Qwen2 LM.

    Args:
        tokenizer (`PreTrainedTokenizerFast`, *optional*): defaults to [`load_tiny_tokenizer`].
        init_std (`float`, *optional*): the LM's (and projectors') init std; defaults to hidden_size**-0.5 = 0.125.
        overrides: any [`OpenMindConfig`] field.
    """
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
        initializer_range=init_std or 64**-0.5,
    )  # fmt: skip
    return _preset_config(tokenizer, vision, audio, text, overrides)


def small_config(tokenizer=None, init_std: float | None = None, **overrides) -> OpenMindConfig:
    """A ~25M-parameter config: SigLIP 64 px in 8 px patches (64 patches, pixel-shuffled 2x2 into 16 image tokens),
    a 4-layer Whisper encoder, a 6-layer Qwen2 LM of width 384.

    Args:
        tokenizer (`PreTrainedTokenizerFast`, *optional*): defaults to [`load_tiny_tokenizer`].
        init_std (`float`, *optional*): the LM's (and projectors') init std; defaults to hidden_size**-0.5 ~ 0.051.
        overrides: any [`OpenMindConfig`] field.
    """
    tokenizer = tokenizer or load_tiny_tokenizer()
    vocab = tokenizer.get_vocab()
    vision = SiglipVisionConfig(
        hidden_size=384, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=6, image_size=64,
        patch_size=8, vision_use_head=False,
    )  # fmt: skip
    audio = WhisperConfig(
        d_model=256, encoder_layers=4, encoder_attention_heads=4, encoder_ffn_dim=1024, num_mel_bins=40,
        max_source_positions=100, decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64,
        vocab_size=16, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        max_target_positions=16, suppress_tokens=None, begin_suppress_tokens=None,
    )  # fmt: skip
    text = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=384, intermediate_size=1024, num_hidden_layers=6,
        num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
        pad_token_id=vocab["<|endoftext|>"], bos_token_id=None, eos_token_id=vocab["<|im_end|>"],
        initializer_range=init_std or 384**-0.5,
    )  # fmt: skip
    overrides = {"vision_projector_type": "pixel_shuffle", "pixel_shuffle_factor": 2, **overrides}
    return _preset_config(tokenizer, vision, audio, text, overrides)


def _preset_config(tokenizer, vision, audio, text, overrides: dict) -> OpenMindConfig:
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


def build_preset(name: str, output_dir: str | Path | None = None, seed: int = 0, **config_overrides):
    """Builds (and saves, when `output_dir` is given) a random preset model and its processor.

    Args:
        name (`str`): one of `PRESETS` (`"tiny"`: ~1 s on CPU; `"small"`: a few seconds).
        output_dir (`str` or `Path`, *optional*): where to save the model and processor; `None` saves nothing.
        seed (`int`, *optional*, defaults to 0): the random initialisation's seed.
        config_overrides: `init_std` or any [`OpenMindConfig`] field (see [`tiny_config`], [`small_config`]).

    Returns:
        `(OpenMindForConditionalGeneration, OpenMindProcessor)`, the model in eval mode.
    """
    configs = {"tiny": tiny_config, "small": small_config}
    if name not in configs:
        raise ValueError(f"Unknown preset {name!r}: choose one of {', '.join(PRESETS)}.")
    tokenizer = load_tiny_tokenizer()
    config = configs[name](tokenizer, **config_overrides)
    torch.manual_seed(seed)
    model = OpenMindForConditionalGeneration(config).eval()
    set_generation_defaults(model, tokenizer)
    processor = build_processor(config, tokenizer)
    if output_dir is not None:
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
    return model, processor


def build_tiny_preset(output_dir: str | Path | None = None, seed: int = 0, **config_overrides):
    """`build_preset("tiny", ...)`: the tiny random model and its processor. ~1 s on CPU."""
    return build_preset("tiny", output_dir, seed, **config_overrides)


__all__ = [
    "PRESETS",
    "SPECIAL_TOKENS",
    "THINK_TOKENS",
    "build_preset",
    "build_tiny_preset",
    "load_tiny_tokenizer",
    "small_config",
    "tiny_config",
    "token_ids",
]
