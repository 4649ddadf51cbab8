"""OpenMind configuration: a vision tower, an audio tower and a causal LM, each from any `AutoConfig` type."""

from __future__ import annotations

import math
from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig

try:  # transformers >= 5.20 declares sub-configs with specs; older ones (vLLM pins 5.16.1-5.19) take a plain dict
    from transformers.configuration_utils import SubConfigSpec
except ImportError:
    SubConfigSpec = None

# Vision towers whose patch sequence starts with a CLS token (dropped by the "default" select strategy).
VISION_TOWERS_WITH_CLS = ("clip_vision_model", "clip", "chinese_clip_vision_model")
# Audio towers we know how to run, and how many encoder frames they emit for `n` mel frames.
AUDIO_TOWERS = ("whisper", "qwen2_audio_encoder")


def audio_encoder_output_length(num_mel_frames: int, audio_model_type: str) -> int:
    """Frames an audio tower emits for `num_mel_frames` valid mel frames (conv stride 2; Qwen2-Audio pools by 2)."""
    length = (num_mel_frames - 1) // 2 + 1
    if audio_model_type == "qwen2_audio_encoder":
        length = (length - 2) // 2 + 1
    return length


@strict
class OpenMindConfig(PreTrainedConfig):
    r"""
    Configuration of an [`OpenMindForConditionalGeneration`]: optional vision and audio towers whose features are
    projected into the embedding space of any causal language model, LLaVA-style.

    Args:
        vision_config (`dict` or `PreTrainedConfig`, *optional*):
            Vision tower config (CLIP or SigLIP vision). `None` builds a model without vision.
        audio_config (`dict` or `PreTrainedConfig`, *optional*):
            Audio tower config (`whisper`, of which only the encoder is used, or `qwen2_audio_encoder`). `None` builds
            a model without audio.
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Causal LM config (Qwen2, Llama, ...). Defaults to a Qwen2 config.
        image_token_id / audio_token_id / video_token_id (`int`, *optional*):
            Ids of the `<image>`, `<audio>` and `<video>` placeholder tokens. Required for each tower present.
        think_start_token_id / think_end_token_id (`int`, *optional*):
            Ids of `<think>` and `</think>`, used by the thinking budget.
        vision_projector_type (`str`, *optional*, defaults to `"mlp"`):
            `"mlp"` (2-layer GELU, LLaVA-1.5) or `"pixel_shuffle"` (merges `pixel_shuffle_factor`^2 neighbouring
            patches into one token first, as in Idefics3 / SmolVLM).
        pixel_shuffle_factor (`int`, *optional*, defaults to 2): token reduction per side for `pixel_shuffle`.
        vision_feature_layer (`int` or `list[int]`, *optional*, defaults to -2):
            Hidden-state index (or indices, concatenated) of the vision tower fed to the projector.
        vision_feature_select_strategy (`str`, *optional*, defaults to `"default"`):
            `"default"` drops the CLS token of towers that have one; `"full"` keeps every token.
        audio_pool_stride (`int`, *optional*, defaults to 2): audio encoder frames averaged into one token.
        video_max_frames (`int`, *optional*, defaults to 8): frame budget per video.
        video_temporal_pool (`int`, *optional*, defaults to 1): consecutive frames averaged into one frame of tokens.
    """

    model_type = "openmind"
    # (default model_type, optional): `None` keeps an optional tower absent.
    _sub_config_types = {
        "vision_config": ("siglip_vision_model", True),
        "audio_config": ("whisper", True),
        "text_config": ("qwen2", False),
    }
    if SubConfigSpec is not None:
        sub_configs_defaults = {
            key: SubConfigSpec(config_class=AutoConfig, model_type=default_type, optional=optional)
            for key, (default_type, optional) in _sub_config_types.items()
        }
    else:
        sub_configs = dict.fromkeys(_sub_config_types, AutoConfig)

    vision_config: dict | PreTrainedConfig | None = None
    audio_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_token_id: int | None = None
    audio_token_id: int | None = None
    video_token_id: int | None = None
    think_start_token_id: int | None = None
    think_end_token_id: int | None = None
    vision_projector_type: Literal["mlp", "pixel_shuffle"] = "mlp"
    pixel_shuffle_factor: int = 2
    vision_feature_layer: int | list[int] = -2
    vision_feature_select_strategy: Literal["default", "full"] = "default"
    projector_hidden_act: str = "gelu"
    multimodal_projector_bias: bool = True
    audio_pool_stride: int = 2
    video_max_frames: int = 8
    video_temporal_pool: int = 1
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        if SubConfigSpec is None:
            self._build_sub_configs()
        super().__post_init__(**kwargs)
        # Tying is a property of the LM: follow the text config (LLaVA does the same).
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True
        self._validate()

    def _build_sub_configs(self) -> None:
        """Dicts -> configs by their `model_type`, as `SubConfigSpec` does on newer transformers."""
        from transformers import CONFIG_MAPPING

        for key, (default_type, optional) in self._sub_config_types.items():
            value = getattr(self, key)
            if value is None and optional:
                continue
            if not isinstance(value, PreTrainedConfig):
                value = dict(value or {})
                setattr(self, key, CONFIG_MAPPING[value.pop("model_type", default_type)](**value))

    def _validate(self) -> None:
        def fail(message: str):
            raise ValueError(f"Invalid OpenMindConfig: {message}")

        if (
            getattr(self.text_config, "vocab_size", None) is None
            or getattr(self.text_config, "hidden_size", None) is None
        ):
            fail(
                f"text_config ({self.text_config.model_type}) must be a causal LM config with vocab_size and hidden_size."
            )
        vocab = self.text_config.vocab_size
        for name in (
            "image_token_id",
            "audio_token_id",
            "video_token_id",
            "think_start_token_id",
            "think_end_token_id",
        ):
            token_id = getattr(self, name)
            if token_id is not None and not 0 <= token_id < vocab:
                fail(f"{name}={token_id} is outside the text vocabulary (size {vocab}). Resize the embeddings first.")
        if self.vision_config is not None:
            if self.image_token_id is None:
                fail("a vision tower needs image_token_id (the id of the `<image>` token).")
            for attr in ("image_size", "patch_size", "hidden_size", "num_hidden_layers"):
                if getattr(self.vision_config, attr, None) is None:
                    fail(
                        f"vision_config ({self.vision_config.model_type}) has no `{attr}`: use a CLIP or SigLIP vision config."
                    )
            if self.vision_config.image_size % self.vision_config.patch_size:
                fail(
                    f"image_size {self.vision_config.image_size} is not a multiple of patch_size {self.vision_config.patch_size}."
                )
            layers = (
                [self.vision_feature_layer]
                if isinstance(self.vision_feature_layer, int)
                else self.vision_feature_layer
            )
            n_states = self.vision_config.num_hidden_layers + 1  # embeddings + one per layer
            if not layers or any(not -n_states <= layer < n_states for layer in layers):
                fail(
                    f"vision_feature_layer={self.vision_feature_layer} is out of range for a {n_states - 1}-layer tower."
                )
            if self.vision_projector_type == "pixel_shuffle":
                side = math.isqrt(self.vision_patch_tokens)
                if side * side != self.vision_patch_tokens:
                    fail(
                        f"pixel_shuffle needs a square patch grid but the tower emits {self.vision_patch_tokens} tokens; "
                        "use vision_feature_select_strategy='default' to drop the CLS token."
                    )
                if self.pixel_shuffle_factor < 1 or side % self.pixel_shuffle_factor:
                    fail(f"pixel_shuffle_factor={self.pixel_shuffle_factor} must divide the patch grid side {side}.")
            if self.video_max_frames < 1 or self.video_temporal_pool < 1:
                fail("video_max_frames and video_temporal_pool must be >= 1.")
        if self.video_token_id is not None and self.vision_config is None:
            fail("video_token_id is set but there is no vision tower: videos run through the vision tower.")
        if self.audio_config is not None:
            if self.audio_config.model_type not in AUDIO_TOWERS:
                fail(
                    f"audio_config.model_type={self.audio_config.model_type!r}; supported: {', '.join(AUDIO_TOWERS)}."
                )
            if self.audio_token_id is None:
                fail("an audio tower needs audio_token_id (the id of the `<audio>` token).")
            if self.audio_pool_stride < 1:
                fail(f"audio_pool_stride must be >= 1, got {self.audio_pool_stride}.")

    @property
    def vision_patch_tokens(self) -> int:
        """Tokens the vision tower emits per image after the select strategy, before the projector."""
        vc = self.vision_config
        tokens = (vc.image_size // vc.patch_size) ** 2 + (vc.model_type in VISION_TOWERS_WITH_CLS)
        # LLaVA's "default" drops the first token whatever the tower (the CLS token on CLIP); kept for exact parity.
        return tokens - (self.vision_feature_select_strategy == "default")

    @property
    def num_image_tokens(self) -> int:
        """Placeholder tokens per image (and per video frame group)."""
        if self.vision_config is None:
            return 0
        if self.vision_projector_type == "pixel_shuffle":
            return self.vision_patch_tokens // self.pixel_shuffle_factor**2
        return self.vision_patch_tokens

    @property
    def audio_max_mel_frames(self) -> int:
        """Mel frames per padded clip that the audio tower expects (2 x max_source_positions)."""
        if self.audio_config is None:
            return 0
        return 2 * self.audio_config.max_source_positions

    def num_audio_tokens(self, num_mel_frames: int) -> int:
        """Placeholder tokens for one clip of `num_mel_frames` valid mel frames: follows the clip's real length."""
        frames = audio_encoder_output_length(num_mel_frames, self.audio_config.model_type)
        return math.ceil(frames / self.audio_pool_stride)


__all__ = ["OpenMindConfig", "audio_encoder_output_length"]
