"""OpenMind: vision and audio towers whose projected features fill placeholder tokens of any causal LM."""

from __future__ import annotations

import contextlib
import importlib
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, GenerationMixin, LogitsProcessorList, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_layers import GenericForSequenceClassification
from transformers.modeling_outputs import BaseModelOutputWithPast, BaseModelOutputWithPooling, CausalLMOutputWithPast
from transformers.utils import torch_compilable_check
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple

from .configuration_openmind import OpenMindConfig, audio_encoder_output_length
from .generation_openmind import ThinkingBudgetLogitsProcessor

# transformers 5.20 renamed `past_key_values` to `cache` (model kwarg and output field); vLLM pins 5.16.1-5.19.
CACHE_FIELD = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"
try:  # transformers >= 5.20 captures just the hidden states listed by index; older ones index a list differently
    from transformers.utils.output_capturing import selected_hidden_states  # noqa: F401

    SELECTS_HIDDEN_STATES = True
except ImportError:
    SELECTS_HIDDEN_STATES = False


@dataclass
class OpenMindModelOutputWithPast(BaseModelOutputWithPast):
    r"""
    image_hidden_states (`torch.FloatTensor` of shape `(num_image_tokens_in_batch, hidden_size)`, *optional*):
        Projected image (and video) features that filled the placeholder positions.
    audio_hidden_states (`torch.FloatTensor` of shape `(num_audio_tokens_in_batch, hidden_size)`, *optional*):
        Projected audio features that filled the placeholder positions.
    image_outputs / audio_outputs ([`BaseModelOutputWithPooling`], *optional*):
        What `get_image_features` / `get_audio_features` returned (the tower's states and attentions, and the
        projected features per image / clip as `pooler_output`), as LLaVA returns `image_outputs`.
    """

    image_hidden_states: torch.FloatTensor | None = None
    audio_hidden_states: torch.FloatTensor | None = None
    image_outputs: BaseModelOutputWithPooling | None = None
    audio_outputs: BaseModelOutputWithPooling | None = None


@dataclass
class OpenMindCausalLMOutputWithPast(CausalLMOutputWithPast):
    r"""The fields of [`CausalLMOutputWithPast`] plus the media ones of [`OpenMindModelOutputWithPast`]."""

    image_hidden_states: torch.FloatTensor | None = None
    audio_hidden_states: torch.FloatTensor | None = None
    image_outputs: BaseModelOutputWithPooling | None = None
    audio_outputs: BaseModelOutputWithPooling | None = None


class OpenMindVisionProjector(nn.Module):
    """Vision features -> LM embeddings: optional pixel shuffle, then a 2-layer GELU MLP (LLaVA-1.5 names)."""

    def __init__(self, config: OpenMindConfig):
        super().__init__()
        layers = config.vision_feature_layer
        in_dim = config.vision_config.hidden_size * (1 if isinstance(layers, int) else len(layers))
        self.shuffle = config.pixel_shuffle_factor if config.vision_projector_type == "pixel_shuffle" else 1
        in_dim *= self.shuffle**2
        out_dim = config.text_config.hidden_size
        self.linear_1 = nn.Linear(in_dim, out_dim, bias=config.multimodal_projector_bias)
        self.act = ACT2FN[config.projector_hidden_act]
        self.linear_2 = nn.Linear(out_dim, out_dim, bias=config.multimodal_projector_bias)

    def pixel_shuffle(self, x: torch.Tensor) -> torch.Tensor:
        # [N, S*S, D] -> [N, (S/f)*(S/f), D*f*f]: each token holds an f x f block of neighbouring patches.
        n, tokens, dim = x.shape
        side, f = int(tokens**0.5), self.shuffle
        x = x.reshape(n, side // f, f, side // f, f, dim).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(n, (side // f) ** 2, f * f * dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.shuffle > 1:
            features = self.pixel_shuffle(features)
        return self.linear_2(self.act(self.linear_1(features)))


class OpenMindAudioProjector(nn.Module):
    """Audio encoder frames -> LM embeddings: average `audio_pool_stride` frames, then a 2-layer GELU MLP."""

    def __init__(self, config: OpenMindConfig):
        super().__init__()
        self.stride = config.audio_pool_stride
        in_dim, out_dim = config.audio_config.d_model, config.text_config.hidden_size
        self.linear_1 = nn.Linear(in_dim, out_dim, bias=config.multimodal_projector_bias)
        self.act = ACT2FN[config.projector_hidden_act]
        self.linear_2 = nn.Linear(out_dim, out_dim, bias=config.multimodal_projector_bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # [N, T, D_audio] -> [N, ceil(T / stride), D_text]
        if self.stride > 1:
            frames = F.avg_pool1d(frames.transpose(1, 2), self.stride, self.stride, ceil_mode=True).transpose(1, 2)
        return self.linear_2(self.act(self.linear_1(frames)))


def build_audio_tower(audio_config) -> nn.Module:
    """The audio encoder alone: `AutoModel` on a Whisper config would also build the decoder we do not use."""
    if audio_config.model_type == "whisper":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder(audio_config)
    return AutoModel.from_config(audio_config)


REMOTE_AUTO_MAP = {
    "AutoConfig": "configuration_openmind.OpenMindConfig",
    "AutoModel": "modeling_openmind.OpenMindModel",
    "AutoModelForImageTextToText": "modeling_openmind.OpenMindForConditionalGeneration",
    "AutoModelForMultimodalLM": "modeling_openmind.OpenMindForConditionalGeneration",
    "AutoModelForSequenceClassification": "modeling_openmind.OpenMindForSequenceClassification",
}


def _refuse_pickled_weights(path, kwargs: dict) -> None:
    """Raises when a local checkpoint directory holds pickled weights but no safetensors ones, or when the caller
    asked for pickles (`use_safetensors=False`) without `allow_pickled_weights=True`."""
    advice = (
        "Re-save it as safetensors (load it once with allow_pickled_weights=True, then `save_pretrained`), or pass "
        "allow_pickled_weights=True (CLI: --allow-pickled-weights) if you trust whoever wrote the file."
    )
    if kwargs.get("use_safetensors") is False:
        raise ValueError(f"use_safetensors=False loads pickled weights, which can run code when unpickled. {advice}")
    if path is None or not os.path.isdir(path):
        return  # a Hub id: `use_safetensors=True` makes transformers refuse a repo without safetensors weights
    folder = os.path.join(path, kwargs.get("subfolder") or "")
    names = set(os.listdir(folder)) if os.path.isdir(folder) else set()
    if any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in names):
        return
    pickled = sorted(n for n in names if n.startswith("pytorch_model") and n.endswith((".bin", ".bin.index.json")))
    if pickled:
        raise ValueError(
            f"Refusing to load {os.path.join(folder, pickled[0])}: this checkpoint's weights are pickled (PyTorch "
            f".bin) and it has no safetensors weights; unpickling a file can run arbitrary code. {advice}"
        )


def _is_quanto_checkpoint(path, kwargs: dict) -> bool:
    """A local directory written by `openmind quantize --backend quanto` (it holds `quantization_map.json`)."""
    folder = os.path.join(str(path), kwargs.get("subfolder") or "")
    return path is not None and os.path.isfile(os.path.join(folder, "quantization_map.json"))


def _frozen(module: nn.Module) -> bool:
    return not any(p.requires_grad for p in module.parameters())


class OpenMindPreTrainedModel(PreTrainedModel):
    config: OpenMindConfig
    config_class = OpenMindConfig
    base_model_prefix = "model"
    input_modalities = ("image", "video", "audio", "text")
    supports_gradient_checkpointing = True
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True  # the count check is `torch_compilable_check`; decode steps carry no media

    # Keys a checkpoint may lack / carry for this class (the reward head loads from a causal-LM checkpoint).
    _allowed_missing_prefixes: tuple[str, ...] = ()
    _allowed_unexpected_prefixes: tuple[str, ...] = ()

    @classmethod
    def from_pretrained(cls, *args, strict: bool = True, allow_pickled_weights: bool = False, **kwargs):
        r"""[`~PreTrainedModel.from_pretrained`], but strict: a missing, unexpected or misshaped weight raises instead
        of being freshly initialised with a warning. Pass `strict=False` to get transformers' lenient behaviour.
        Weights must be safetensors: pickled ones (`pytorch_model.bin`) load only with `allow_pickled_weights=True`,
        because unpickling can run code even with `weights_only=True` (a mitigation with a history of bypasses)."""
        path = args[0] if args else kwargs.get("pretrained_model_name_or_path")
        if _is_quanto_checkpoint(path, kwargs):
            # transformers cannot load optimum-quanto weights; `openmind quantize` writes them with a map we requantize
            # Looked up by name: transformers' remote-code loader imports every `import` line of this file, and a
            # checkpoint loaded with trust_remote_code must not need the openmind_hf package.
            inference = importlib.import_module("openmind_hf.building.inference")
            return inference.load_quantized_from_pretrained(cls, path, kwargs)
        if not allow_pickled_weights:
            _refuse_pickled_weights(path, kwargs)
            kwargs["use_safetensors"] = True  # transformers then never falls back to a pickle (Hub repos too)
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        if strict:
            tied = (
                set(getattr(model, "all_tied_weights_keys", {}) or {}) if model.config.tie_word_embeddings else set()
            )
            missing = [
                k for k in info["missing_keys"] if k not in tied and not k.startswith(cls._allowed_missing_prefixes)
            ]
            unexpected = [k for k in info["unexpected_keys"] if not k.startswith(cls._allowed_unexpected_prefixes)]
            mismatched = list(info.get("mismatched_keys") or [])
            if missing or unexpected or mismatched:
                raise ValueError(
                    f"Checkpoint {args[0] if args else kwargs.get('pretrained_model_name_or_path')!s} does not match "
                    f"{cls.__name__}: missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}, "
                    f"wrong shape {[str(m) for m in mismatched][:8]}. Is it a checkpoint of this architecture and "
                    "config? (strict=False loads anyway, initialising what is missing.)"
                )
        return (model, info) if wants_info else model

    def save_pretrained(self, save_directory, *args, **kwargs):
        # With the classes registered for remote code, every Auto class maps to the copied files, so the
        # checkpoint loads with `trust_remote_code=True` where OpenMind is not installed (TRL needs auto_map too).
        if type(self)._auto_class is not None:
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **REMOTE_AUTO_MAP}
        return super().save_pretrained(save_directory, *args, **kwargs)


class OpenMindModel(OpenMindPreTrainedModel):
    """Towers + projectors + the LM body (no head). Consumes media itself, so TRL's fused-head paths see them."""

    def __init__(self, config: OpenMindConfig):
        super().__init__(config)
        self.vision_tower = AutoModel.from_config(config.vision_config) if config.vision_config is not None else None
        self.multi_modal_projector = OpenMindVisionProjector(config) if config.vision_config is not None else None
        self.audio_tower = build_audio_tower(config.audio_config) if config.audio_config is not None else None
        self.audio_projector = OpenMindAudioProjector(config) if config.audio_config is not None else None
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    @can_return_tuple
    def get_image_features(
        self,
        pixel_values: torch.FloatTensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        r"""
        Runs the vision tower and the projector. A frozen tower runs without autograd.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(num_images, 3, height, width)`): the images.
            output_hidden_states (`bool`, *optional*): return every hidden state of the tower (otherwise only the
                `vision_feature_layer` ones are captured, the others are `None`).
            output_attentions (`bool`, *optional*): return the tower's attention weights.

        Returns:
            [`BaseModelOutputWithPooling`]: `pooler_output` [N, num_image_tokens, D_text] (projected, what fills the
            `<image>` positions), `last_hidden_state` [N, T, D_vision] of the tower, `hidden_states`, `attentions`.
        """
        cfg = self.config
        layers = [cfg.vision_feature_layer] if isinstance(cfg.vision_feature_layer, int) else cfg.vision_feature_layer
        if output_hidden_states is None:
            output_hidden_states = bool(getattr(self.vision_tower.config, "output_hidden_states", False))
        if output_attentions is not None:  # None: the tower's config decides
            kwargs["output_attentions"] = output_attentions
        grad = contextlib.nullcontext() if not _frozen(self.vision_tower) else torch.no_grad()
        with grad:
            tower = self.vision_tower(
                pixel_values.to(self.vision_tower.dtype),
                # a list of indices makes the tower capture only the states the projector uses
                output_hidden_states=True if output_hidden_states or not SELECTS_HIDDEN_STATES else list(layers),
                return_dict=True,
                **kwargs,
            )
            selected = [tower.hidden_states[i] for i in layers]
            if cfg.vision_feature_select_strategy == "default":
                selected = [s[:, 1:] for s in selected]
            features = torch.cat(selected, dim=-1)
        return BaseModelOutputWithPooling(
            last_hidden_state=tower.last_hidden_state,
            pooler_output=self.multi_modal_projector(features),
            hidden_states=tower.hidden_states,
            attentions=tower.attentions,
        )

    @can_return_tuple
    def get_video_features(
        self,
        pixel_values_videos: torch.FloatTensor,
        video_num_frames: torch.LongTensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        r"""
        Frames run through the vision tower; each clip's frames are averaged in groups of `video_temporal_pool`.

        Args:
            pixel_values_videos (`torch.FloatTensor`): `(num_videos, frames, 3, H, W)`, or the processor's flat
                `(total_frames, 3, H, W)` with `video_num_frames`.
            video_num_frames (`torch.LongTensor` of shape `(num_videos,)`, *optional*): frames per clip of a flat
                input. Without it a flat input is read as one-frame clips.
            kwargs: `output_hidden_states` / `output_attentions`, as in [`~OpenMindModel.get_image_features`].

        Returns:
            [`BaseModelOutputWithPooling`]: `pooler_output` is a tuple with one [ceil(F_i / pool) * num_image_tokens,
            D_text] tensor per clip; the other fields are the tower's, over all frames.
        """
        if pixel_values_videos.ndim == 5:  # [V, F, 3, H, W] -> [V*F, 3, H, W]
            video_num_frames = [pixel_values_videos.shape[1]] * pixel_values_videos.shape[0]
            pixel_values_videos = pixel_values_videos.flatten(0, 1)
        elif video_num_frames is None:
            video_num_frames = [1] * pixel_values_videos.shape[0]
        elif torch.is_tensor(video_num_frames):
            video_num_frames = video_num_frames.tolist()
        outputs = self.get_image_features(pixel_values_videos, return_dict=True, **kwargs)
        pool = self.config.video_temporal_pool
        clips = []
        for clip in torch.split(outputs.pooler_output, video_num_frames):  # [F, T, D] each
            if pool > 1:  # [F, T, D] -> [ceil(F/pool), T, D]
                clip = F.avg_pool1d(clip.permute(1, 2, 0), pool, pool, ceil_mode=True).permute(2, 0, 1)
            clips.append(clip.reshape(-1, clip.shape[-1]))
        outputs.pooler_output = tuple(clips)
        return outputs

    @can_return_tuple
    def get_audio_features(
        self,
        input_features: torch.FloatTensor,
        feature_attention_mask: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        r"""
        Runs the audio encoder and the projector.

        Args:
            input_features (`torch.FloatTensor` of shape `(num_clips, num_mel_bins, mel_frames)`): log-mel features.
            feature_attention_mask (`torch.LongTensor` of shape `(num_clips, mel_frames)`, *optional*): 1 on real
                frames. Each clip then keeps only the tokens of its real length.
            output_hidden_states / output_attentions (`bool`, *optional*): return the encoder's states / weights.

        Returns:
            [`BaseModelOutputWithPooling`]: `pooler_output` is a tuple with one [tokens_i, D_text] tensor per clip
            (what fills its `<audio>` positions); `last_hidden_state` [N, T_enc, D_audio] is the encoder's.
        """
        if self.audio_tower is None:
            raise ValueError(
                "This OpenMind model has no audio tower (config.audio_config is None), so it has no audio features: "
                "build it with an audio_config to use audio."
            )
        for name, value in (("output_hidden_states", output_hidden_states), ("output_attentions", output_attentions)):
            if value is not None:  # None: the encoder's config decides
                kwargs[name] = value
        grad = contextlib.nullcontext() if not _frozen(self.audio_tower) else torch.no_grad()
        with grad:
            encoded = self.audio_tower(input_features.to(self.audio_tower.dtype), return_dict=True, **kwargs)
        tokens = self.audio_projector(encoded.last_hidden_state)  # [N, T_enc, D_a] -> [N, ceil(T_enc / stride), D]
        if feature_attention_mask is None:
            clips = tuple(tokens)
        else:
            mel_lengths = feature_attention_mask.sum(-1)
            frame_lengths = audio_encoder_output_length(mel_lengths, self.config.audio_config.model_type)
            token_lengths = -(-frame_lengths // self.config.audio_pool_stride)  # ceil
            clips = tuple(clip[:length] for clip, length in zip(tokens, token_lengths.tolist()))
        return BaseModelOutputWithPooling(
            last_hidden_state=encoded.last_hidden_state,
            pooler_output=clips,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )

    def _merge(self, input_ids, inputs_embeds, token_id, features, name):
        """Writes `features` [n, D] into the placeholder positions of `token_id`; the counts must match exactly.
        Without `input_ids`, the placeholders are the rows equal to the token's embedding (as LLaVA finds them)."""
        if input_ids is not None:
            mask = input_ids == token_id  # [B, T]
        else:
            token = self.get_input_embeddings()(torch.tensor(token_id, device=inputs_embeds.device))
            mask = (inputs_embeds == token).all(-1)
        n_tokens = mask.sum()
        torch_compilable_check(
            n_tokens == features.shape[0],
            lambda: (
                f"{name} features and {name} tokens do not match: tokens: {int(n_tokens)}, features: "
                f"{features.shape[0]}. Build inputs with the OpenMind processor and do not truncate inside a run of "
                "placeholder tokens."
            ),
        )
        mask = mask.unsqueeze(-1).to(inputs_embeds.device)
        return inputs_embeds.masked_scatter(mask, features.to(inputs_embeds.device, inputs_embeds.dtype))

    def _idle_tower_pass(self, inputs_embeds: torch.Tensor, slot: str) -> torch.Tensor:
        """
        In multi-process training, stands in for a tower call this batch does not make (`slot`: `"image"`, `"video"`
        or `"audio"`, called where that call would be): runs the tower on one all-zero input and adds its output
        times 0 to `inputs_embeds`. The value is unchanged, but every rank then makes the same tower calls in the
        same order, so ZeRO-3 / FSDP gather the same parameters and DDP / ZeRO reduce the same gradients (zeros from
        idle towers); a rank whose batch lacks a modality would otherwise skip collectives the others wait in. One
        process (and inference) never runs it.
        """
        if not (self.training and torch.distributed.is_available() and torch.distributed.is_initialized()):
            return inputs_embeds
        if torch.distributed.get_world_size() == 1:
            return inputs_embeds
        if slot in ("image", "video"):
            if self.vision_tower is None or (slot == "video" and self.config.video_token_id is None):
                return inputs_embeds
            vc = self.config.vision_config
            pixels = inputs_embeds.new_zeros(1, vc.num_channels, vc.image_size, vc.image_size)
            features = self.get_image_features(pixels, return_dict=True).pooler_output
        else:
            if self.audio_tower is None:
                return inputs_embeds
            mels = inputs_embeds.new_zeros(1, self.config.audio_config.num_mel_bins, self.config.audio_max_mel_frames)
            features = torch.cat(self.get_audio_features(mels, return_dict=True).pooler_output)
        return inputs_embeds + 0.0 * features.sum().to(inputs_embeds.dtype)

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        input_features: torch.FloatTensor | None = None,
        feature_attention_mask: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_num_frames: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.FloatTensor | None = None,
        **kwargs,
    ) -> OpenMindModelOutputWithPast:
        r"""
        Media given with the text fill its placeholder tokens (the counts must match). Placeholders without media
        stay plain token embeddings, as in LLaVA: decode steps, draft models of assisted decoding and prompt lookup
        see no media. `past_key_values` is accepted as the deprecated name of `cache`.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)  # [B, T, D]
        cfg = self.config
        image_features = audio_features = image_outputs = audio_outputs = None
        if self.vision_tower is None and (pixel_values is not None or pixel_values_videos is not None):
            raise ValueError("This OpenMind model has no vision tower, but images or videos were given.")
        if pixel_values is not None:
            image_outputs = self.get_image_features(pixel_values, return_dict=True)
            image_features = image_outputs.pooler_output.flatten(0, 1)  # [N * num_image_tokens, D]
            inputs_embeds = self._merge(input_ids, inputs_embeds, cfg.image_token_id, image_features, "<image>")
        else:
            inputs_embeds = self._idle_tower_pass(inputs_embeds, "image")
        if pixel_values_videos is None:
            inputs_embeds = self._idle_tower_pass(inputs_embeds, "video")
        else:
            if cfg.video_token_id is None:
                raise ValueError("Videos were given but config.video_token_id is None: set it to the `<video>` id.")
            clips = self.get_video_features(pixel_values_videos, video_num_frames, return_dict=True).pooler_output
            inputs_embeds = self._merge(input_ids, inputs_embeds, cfg.video_token_id, torch.cat(clips), "<video>")
        if input_features is not None:
            if self.audio_tower is None:
                raise ValueError("This OpenMind model has no audio tower, but audio features were given.")
            audio_outputs = self.get_audio_features(input_features, feature_attention_mask, return_dict=True)
            audio_features = torch.cat(audio_outputs.pooler_output)  # [sum of tokens per clip, D]
            inputs_embeds = self._merge(input_ids, inputs_embeds, cfg.audio_token_id, audio_features, "<audio>")
        else:
            inputs_embeds = self._idle_tower_pass(inputs_embeds, "audio")

        if attention_mask is None and position_ids is not None and cache is None:
            # A packed row (position_ids restart per sample, no mask): transformers builds per-sample masks from
            # position_ids only when no KV cache is being built, so never build one here.
            kwargs["use_cache"] = False
        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            **{CACHE_FIELD: cache},
            return_dict=True,
            **kwargs,
        )
        return OpenMindModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            **{CACHE_FIELD: getattr(outputs, CACHE_FIELD)},
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=image_features,
            audio_hidden_states=audio_features,
            image_outputs=image_outputs,
            audio_outputs=audio_outputs,
        )


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `rows @ weight.T (+ bias)` against `targets`, `chunk` rows at a time.

    The gradients are formed in the forward, chunk by chunk (softmax minus one-hot, then two matmuls), so at most one
    [chunk, V] block of logits ever exists and nothing of size [n, V] is kept for the backward, which only scales the
    stored gradients by the incoming one. Same matmul FLOPs as the plain path; memory O(chunk * V) instead of O(n * V).
    """

    @staticmethod
    def forward(ctx, rows, weight, bias, targets, chunk):
        want_rows, want_weight, want_bias = ctx.needs_input_grad[:3]
        grad_rows = torch.empty_like(rows) if want_rows else None  # [n, D]
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if want_weight else None  # [V, D]
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if want_bias else None  # [V]
        total = torch.zeros((), dtype=torch.float32, device=rows.device)
        for start in range(0, rows.shape[0], chunk):
            block, target = rows[start : start + chunk], targets[start : start + chunk]
            logits = F.linear(block, weight, bias).float()  # [c, V]
            lse = torch.logsumexp(logits, dim=-1)  # [c]
            total += (lse - logits.gather(1, target[:, None]).squeeze(1)).sum()
            probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place: d loss / d logits = softmax - one_hot
            probs[torch.arange(probs.shape[0], device=probs.device), target] -= 1.0
            if want_rows:
                grad_rows[start : start + chunk] = (probs.to(weight.dtype) @ weight).to(rows.dtype)
            if want_weight:
                grad_weight.addmm_(probs.t(), block.float())
            if want_bias:
                grad_bias += probs.sum(0)
        ctx.save_for_backward(grad_rows, grad_weight, grad_bias)
        ctx.dtypes = (rows.dtype, weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        grads = [None if g is None else (g * grad_total).to(dtype) for g, dtype in zip(ctx.saved_tensors, ctx.dtypes)]
        return (*grads, None, None)


def _is_plain_linear(module: nn.Module) -> bool:
    """A bare `nn.Linear` with an ordinary local weight, usable directly (not LoRA-wrapped, quantized, a sharded
    DTensor or a ZeRO-3 partition, which only their own forward knows how to apply)."""
    weight = getattr(module, "weight", None)
    return type(module) is nn.Linear and type(weight.data) is torch.Tensor and not hasattr(weight, "ds_id")


def labelled_positions_loss(
    hidden_states: torch.Tensor,
    lm_head: nn.Module,
    labels: torch.LongTensor | None,
    num_items_in_batch=None,
    chunk: int = 512,
    shift_labels: torch.LongTensor | None = None,
) -> torch.Tensor:
    """Causal-LM cross-entropy that runs the head only on positions with a label.

    Same value and gradients as `lm_head(h)` + shifted cross-entropy over every position, without ever building the
    [B*T, V] logits: the head runs on the labelled rows only, `chunk` rows at a time. A plain `nn.Linear` head that
    trains goes through `_FusedLinearCrossEntropy`, which keeps no [rows, V] tensor for the backward either; any
    other head (LoRA-wrapped, quantized) runs through its own forward.
    """
    if shift_labels is None:  # `shift_labels` (already shifted, as context parallelism passes them) wins
        shift_labels = F.pad(labels, (0, 1), value=-100)[:, 1:]  # position t predicts label t+1: [B, T]
    selected = shift_labels != -100
    rows = hidden_states[selected.to(hidden_states.device)]  # [n, D]
    targets = shift_labels[selected].to(rows.device)  # [n]
    if _is_plain_linear(lm_head) and torch.is_grad_enabled() and (rows.requires_grad or lm_head.weight.requires_grad):
        total = _FusedLinearCrossEntropy.apply(rows, lm_head.weight, lm_head.bias, targets, chunk)
    else:
        total = hidden_states.new_zeros((), dtype=torch.float32)
        for start in range(0, rows.shape[0], chunk):
            logits = lm_head(rows[start : start + chunk]).float()  # [chunk, V]
            total = total + F.cross_entropy(logits, targets[start : start + chunk].to(logits.device), reduction="sum")
    denominator = num_items_in_batch if num_items_in_batch is not None else targets.numel()
    if torch.is_tensor(denominator):
        denominator = denominator.to(total.device)
    return total / denominator


class OpenMindForConditionalGeneration(OpenMindPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}

    def __init__(self, config: OpenMindConfig):
        super().__init__(config)
        self.model = OpenMindModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        # When True (set by the training code), a forward with labels returns the loss without full logits.
        self.loss_only_when_labelled = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    def get_image_features(self, pixel_values: torch.FloatTensor, **kwargs) -> BaseModelOutputWithPooling:
        return self.model.get_image_features(pixel_values, **kwargs)

    def get_video_features(self, pixel_values_videos, video_num_frames=None, **kwargs) -> BaseModelOutputWithPooling:
        return self.model.get_video_features(pixel_values_videos, video_num_frames, **kwargs)

    def get_audio_features(self, input_features, feature_attention_mask=None, **kwargs) -> BaseModelOutputWithPooling:
        return self.model.get_audio_features(input_features, feature_attention_mask, **kwargs)

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        input_features: torch.FloatTensor | None = None,
        feature_attention_mask: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_num_frames: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> OpenMindCausalLMOutputWithPast:
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        # Context/sequence-parallel training passes labels already shifted (each rank holds a slice of the sequence).
        shift_labels = kwargs.pop("shift_labels", None)
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            input_features=input_features,
            feature_attention_mask=feature_attention_mask,
            pixel_values_videos=pixel_values_videos,
            video_num_frames=video_num_frames,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state  # [B, T, D]
        loss = logits = None
        labelled = labels is not None or shift_labels is not None
        if labelled:
            loss = labelled_positions_loss(
                hidden_states, self.lm_head, labels, num_items_in_batch, shift_labels=shift_labels
            )
        if not labelled or not self.loss_only_when_labelled:
            keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
            logits = self.lm_head(hidden_states[:, keep, :])
        return OpenMindCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            **{CACHE_FIELD: getattr(outputs, CACHE_FIELD)},
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=outputs.image_hidden_states,
            audio_hidden_states=outputs.audio_hidden_states,
            image_outputs=outputs.image_outputs,
            audio_outputs=outputs.audio_outputs,
        )

    def generate(self, *args, thinking_budget: int | None = None, logits_processor=None, **kwargs):
        r"""
        [`~GenerationMixin.generate`] plus `thinking_budget` (`int`, *optional*): after that many tokens inside an open
        `<think>` block, `</think>` is forced so the model moves on to its answer. With thinking off (the prompt ends
        with the template's empty block) no thinking text is generated; see [`ThinkingBudgetLogitsProcessor`].
        """
        start, end = self.config.think_start_token_id, self.config.think_end_token_id
        if thinking_budget is not None and (start is None or end is None):
            raise ValueError("thinking_budget needs think_start_token_id and think_end_token_id in the config.")
        if start is not None and end is not None:
            eos = kwargs.get("eos_token_id", (kwargs.get("generation_config") or self.generation_config).eos_token_id)
            eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
            # First in the list: a sampler passed by the caller (the server's) must see the suppressed/forced tokens.
            thinking = ThinkingBudgetLogitsProcessor(start, end, thinking_budget, eos)
            logits_processor = LogitsProcessorList([thinking, *(logits_processor or [])])
        return super().generate(*args, logits_processor=logits_processor, **kwargs)


class OpenMindForSequenceClassification(GenericForSequenceClassification, OpenMindPreTrainedModel):
    """OpenMind with a scalar (or `num_labels`) head on the last non-pad token: the multimodal reward model.
    Media (`pixel_values`, `input_features`, ...) pass through to [`OpenMindModel`]. Loads from a causal-LM
    OpenMind checkpoint; only `score` is new."""

    _allowed_missing_prefixes = ("score.",)
    _allowed_unexpected_prefixes = ("lm_head.",)

    def __init__(self, config: OpenMindConfig):
        # GenericForSequenceClassification builds `self.model` with AutoModel.from_config, which needs the
        # registration; build OpenMindModel directly so this also works from remote code.
        OpenMindPreTrainedModel.__init__(self, config)
        self.num_labels = config.num_labels
        self.model = OpenMindModel(config)
        self.score = nn.Linear(config.text_config.hidden_size, self.num_labels, bias=False)
        self.post_init()


__all__ = [
    "OpenMindForSequenceClassification",
    "OpenMindPreTrainedModel",
    "OpenMindModel",
    "OpenMindForConditionalGeneration",
    "OpenMindVisionProjector",
    "OpenMindAudioProjector",
    "labelled_positions_loss",
]
