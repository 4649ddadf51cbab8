"""OpenMind processor: an image processor, a Whisper feature extractor and a tokenizer behind one chat template.

Placeholders are expanded here: `<image>` -> `num_image_tokens` tokens, `<audio>` -> as many tokens as the clip's
real length gives (not the padded window), `<video>` -> sampled frames (grouped by `video_temporal_pool`) times
`num_image_tokens`. The model checks the counts again and names both numbers when they differ.
"""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image
from transformers import BatchFeature, ProcessorMixin
from transformers.processing_utils import MultiModalData

from .media_decoding import decode_audio, decode_video, to_rgb


def audio_token_count(num_mel_frames: int, audio_model_type: str, pool_stride: int) -> int:
    """Audio tokens for a clip of `num_mel_frames` valid mel frames. Mirrors the model's
    `audio_encoder_output_length` (the model re-checks the counts); repeated here because a `trust_remote_code`
    checkpoint ships this file without the modeling package."""
    frames = (num_mel_frames - 1) // 2 + 1  # conv stride 2
    if audio_model_type == "qwen2_audio_encoder":
        frames = (frames - 2) // 2 + 1  # its built-in average pool
    return math.ceil(frames / pool_stride)


class OpenMindProcessor(ProcessorMixin):
    r"""
    Builds OpenMind inputs from chats with images, audio and video.

    Args:
        image_processor (`SiglipImageProcessorPil` or `CLIPImageProcessorPil`): resizes and normalises images.
        feature_extractor (`WhisperFeatureExtractor`): log-mel features, padded to the tower's window.
        tokenizer (`PreTrainedTokenizerBase`): must know `<image>`, `<audio>` and `<video>`.
        chat_template (`str`, *optional*): ChatML template with image/audio/video blocks and a thinking switch.
        num_image_tokens (`int`, *optional*, defaults to 0): tokens per image (0: the model has no vision tower).
        audio_model_type (`str`, *optional*): `"whisper"` or `"qwen2_audio_encoder"`; `None` when there is no audio.
        audio_pool_stride (`int`, *optional*, defaults to 2): encoder frames per audio token.
        video_max_frames (`int`, *optional*, defaults to 8): frame budget per video.
        video_temporal_pool (`int`, *optional*, defaults to 1): frames averaged into one group of image tokens.
    """

    def __init__(
        self,
        image_processor=None,
        feature_extractor=None,
        tokenizer=None,
        chat_template: str | None = None,
        num_image_tokens: int = 0,
        audio_model_type: str | None = None,
        audio_pool_stride: int = 2,
        video_max_frames: int = 8,
        video_temporal_pool: int = 1,
        **kwargs,
    ):
        self.num_image_tokens = num_image_tokens
        self.audio_model_type = audio_model_type
        self.audio_pool_stride = audio_pool_stride
        self.video_max_frames = video_max_frames
        self.video_temporal_pool = video_temporal_pool
        self.image_token, self.audio_token, self.video_token = "<image>", "<audio>", "<video>"
        vocab = tokenizer.get_vocab()
        missing = [t for t in (self.image_token, self.audio_token, self.video_token) if t not in vocab]
        if missing:
            raise ValueError(f"The tokenizer lacks {missing}: add them as special tokens and resize the embeddings.")
        self.image_token_id, self.audio_token_id, self.video_token_id = (
            vocab[self.image_token],
            vocab[self.audio_token],
            vocab[self.video_token],
        )
        super().__init__(image_processor, feature_extractor, tokenizer, chat_template=chat_template, **kwargs)

    # The mixin routes videos only when a `video_processor` exists; frames go through the image processor.
    @property
    def video_processor(self):
        return self.image_processor

    def __call__(self, images=None, text=None, videos=None, audio=None, **kwargs) -> BatchFeature:
        """Tokenizes `text` (a string or a batch) with its placeholders expanded; returns `input_ids`,
        `attention_mask`, `pixel_values`, `input_features` + `feature_attention_mask`, and
        `pixel_values_videos` + `video_num_frames`. Images may be nested per sample, including empty lists."""
        if images is not None and _is_empty_nested(images):
            images = None
        if videos is not None and _is_empty_nested(videos):
            videos = None
        if audio is not None and isinstance(audio, (list, tuple)) and len(audio) == 0:
            audio = None
        return super().__call__(images=images, text=text, videos=videos, audio=audio, **kwargs)

    def prepare_inputs_layout(self, images=None, text=None, videos=None, audio=None, **kwargs):
        if audio is not None:
            audio = [audio] if isinstance(audio, np.ndarray) and audio.ndim == 1 else list(audio)
            audio = [self._check_clip(clip, i, kwargs.get("sampling_rate")) for i, clip in enumerate(audio)]
        images, text, _, audio = super().prepare_inputs_layout(
            images=images, text=text, videos=None, audio=audio, **kwargs
        )
        if videos is not None:
            videos = _flatten_videos(videos) or None
        return images, text, videos, audio

    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs):
        # Videos are counted here, not by the mixin (which wants decoded arrays).
        without_videos = [t.replace(self.video_token, "") for t in text] if text is not None else None
        super().validate_inputs(images=images, text=without_videos, videos=None, audio=audio, **kwargs)
        if text is not None:
            n_text = sum(sample.count(self.video_token) for sample in text)
            n_media = len(videos) if videos is not None else 0
            if n_text != n_media:
                raise ValueError(
                    f"The prompts hold {n_text} {self.video_token} tokens but {n_media} videos were passed: "
                    "give exactly one video per placeholder."
                )
        if images is not None and self.num_image_tokens == 0:
            raise ValueError("This model has no vision tower: it cannot take images or videos.")
        if audio is not None and self.audio_model_type is None:
            raise ValueError("This model has no audio tower: it cannot take audio.")

    def _check_clip(self, clip, index: int, sampling_rate: int | None):
        """One clip -> mono float32 at the feature extractor's rate, by the shared decoder (its conventions: arrays
        are `[samples]` or `[channels, samples]`; files carry their own rate)."""
        if isinstance(clip, str) and clip.startswith(("http://", "https://")):
            return clip  # a URL: the mixin's `fetch_audio` downloads it
        return decode_audio(
            clip, self.feature_extractor.sampling_rate, source_rate=sampling_rate, what=f"audio clip {index}"
        )

    def _process_images(self, images, **kwargs):
        flat = [to_rgb(img) if isinstance(img, Image.Image) else img for img in _flatten(images)]
        processed = self.image_processor(flat, **kwargs)
        return processed, [self.image_token * self.num_image_tokens] * len(flat)

    def _process_videos(self, videos, **kwargs):
        num_frames, fps = kwargs.pop("num_frames", None), kwargs.pop("fps", None)
        if kwargs.pop("do_sample_frames", None) is False:  # every frame (still at most `video_max_frames`)
            num_frames = fps = None
        clips = [
            decode_video(v, num_frames, fps, self.video_max_frames, what=f"video {v if _is_path(v) else i}")
            for i, v in enumerate(videos)
        ]
        frames = [frame for clip in clips for frame in clip]
        pixel_values = self.image_processor(frames, **kwargs)["pixel_values"]
        counts = [len(clip) for clip in clips]
        replacements = [
            self.video_token * (math.ceil(n / self.video_temporal_pool) * self.num_image_tokens) for n in counts
        ]
        return {"pixel_values_videos": pixel_values, "video_num_frames": counts}, replacements

    def _process_audio(self, audio, **kwargs):
        kwargs = {**kwargs, "return_attention_mask": True, "padding": "max_length"}
        kwargs.pop("sampling_rate", None)  # clips were resampled to the extractor's rate above
        # A flat `max_length` is the text's (in tokens); the encoder needs its fixed window, so it never truncates audio.
        kwargs.pop("max_length", None)
        features = self.feature_extractor(audio, sampling_rate=self.feature_extractor.sampling_rate, **kwargs)
        mask = features.pop("attention_mask")
        features["feature_attention_mask"] = mask
        lengths = [int(np.asarray(m).sum()) for m in mask]
        replacements = [
            self.audio_token * audio_token_count(n, self.audio_model_type, self.audio_pool_stride) for n in lengths
        ]
        return features, replacements

    def _get_num_multimodal_tokens(self, image_sizes=None, audio_lengths=None, **kwargs) -> MultiModalData:
        r"""
        Placeholder tokens each item expands to, for serving engines (vLLM) that size a request before processing it.

        Args:
            image_sizes (`list[list[int]]`, *optional*): `(height, width)` per image. Every image is resized to the
                tower's input, so each one takes `num_image_tokens` tokens in one patch.
            audio_lengths (`list[int]`, *optional*): valid mel frames per clip.

        Returns:
            `MultiModalData`: `num_image_tokens` and `num_image_patches` per image, `num_audio_tokens` per clip.
        """
        data = {}
        if image_sizes is not None:
            data["num_image_tokens"] = [self.num_image_tokens] * len(image_sizes)
            data["num_image_patches"] = [1] * len(image_sizes)
        if audio_lengths is not None:
            data["num_audio_tokens"] = [
                audio_token_count(n, self.audio_model_type, self.audio_pool_stride) for n in audio_lengths
            ]
        return MultiModalData(**data)

    @property
    def model_input_names(self):
        return [
            *self.tokenizer.model_input_names,
            "pixel_values",
            "input_features",
            "feature_attention_mask",
            "pixel_values_videos",
            "video_num_frames",
        ]


def _flatten(items):
    if isinstance(items, (list, tuple)):
        return [x for item in items for x in _flatten(item)]
    return [items]


def _is_path(item) -> bool:
    return isinstance(item, (str, os.PathLike))


def _is_frame(item) -> bool:
    return isinstance(item, (Image.Image, np.ndarray)) or hasattr(item, "__array__")


def _frames_of_array(video: np.ndarray) -> list:
    """A `[frames, H, W, C]` or `[frames, C, H, W]` array -> its frames, channels last (what the decoder reads)."""
    if video.shape[1] in (1, 3) and video.shape[-1] not in (1, 3, 4):
        video = np.moveaxis(video, 1, -1)
    return list(video)


def _flatten_videos(videos) -> list:
    """Videos come flat or nested per sample (`apply_chat_template` passes `[[video], ...]`); a video is a path, a
    list of frames or a `[frames, ...]` array. Returns the flat list of videos."""
    if isinstance(videos, (str, os.PathLike)):
        return [videos]
    if isinstance(videos, np.ndarray) and videos.ndim == 4:
        return [_frames_of_array(videos)]
    if isinstance(videos, (list, tuple)) and videos and all(_is_frame(f) and np.ndim(f) in (2, 3) for f in videos):
        return [list(videos)]  # one video given as a flat list of frames
    flat = []
    for item in videos:
        if isinstance(item, np.ndarray) and item.ndim == 4:
            flat.append(_frames_of_array(item))
        elif isinstance(item, (str, os.PathLike)):
            flat.append(item)
        elif isinstance(item, (list, tuple)) and item and all(_is_frame(f) for f in item):
            flat.append(list(item))  # one video given as its frames
        elif isinstance(item, (list, tuple)):
            flat.extend(_flatten_videos(item))
        else:
            raise ValueError(f"A video must be a path or a list of frames, got {type(item).__name__}.")
    return flat


def _is_empty_nested(items) -> bool:
    return isinstance(items, (list, tuple)) and len(_flatten(items)) == 0


__all__ = ["OpenMindProcessor", "audio_token_count"]
