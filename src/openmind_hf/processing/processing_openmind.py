"""OpenMind processor: an image processor, a Whisper feature extractor and a tokenizer behind one chat template.

Placeholders are expanded here: `<image>` -> `num_image_tokens` tokens, `<audio>` -> as many tokens as the clip's
real length gives (not the padded window), `<video>` -> sampled frames (grouped by `video_temporal_pool`) times
`num_image_tokens`. The model checks the counts again and names both numbers when they differ.

A video may also be heard: `use_audio_in_video=True` (every video of the call), or per video a dict
`{"path" | "bytes": ..., "start": s, "end": s, "audio": True, "missing_audio": "silence"}`, or a decoded
`VideoClip` (frames + sound, what the data path gives). Its sound over the same `[start, end)` span as its frames
is resampled to the audio tower's rate and placed right after the frames: `<video>` expands to the frame tokens
followed by the clip's `<audio>` tokens ("frames then audio", the default). `video_audio_layout="interleaved"`
instead cuts the sound into one clip per group of `video_temporal_pool` frames, each placed after its frames.
Frames-then-audio is the default because it learned at least as well and costs less: on the seen-and-heard toy task
(`data.synthetic.write_video_sound_dataset`, tiny preset, SFT, 256 train / 128 held-out, 2 seeds), at 120 steps
frames-then-audio answered colour+pitch 1.00 / 1.00 while interleaved gave 0.55 (pitch not learned) / 1.00; at 60
and 90 steps neither had learned the pitch yet. The audio tower encodes one fixed, padded window per clip, so
interleaving k chunks encodes k windows per video (k times the audio compute) and cuts sounds at chunk edges.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image
from transformers import BatchFeature, ProcessorMixin
from transformers.processing_utils import MultiModalData

from .errors import MediaDecodeError
from .media_decoding import VideoClip, decode_audio, decode_video, decode_video_audio, to_rgb


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
        video_max_source_frames (`int`, *optional*): refuse a video (or its span) longer than this many frames,
            from its container's metadata, before decoding.

    Call kwargs beyond the mixin's: `use_audio_in_video` (`bool`, defaults to False) hears every video's sound
    (see the module docstring; a video dict's own `"audio"` wins).
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
        video_max_source_frames: int | None = None,
        **kwargs,
    ):
        self.video_max_source_frames = video_max_source_frames
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
        use_audio_in_video = bool(kwargs.pop("use_audio_in_video", False))
        layout = kwargs.pop("video_audio_layout", "frames_then_audio")
        if layout not in VIDEO_AUDIO_LAYOUTS:
            raise ValueError(f"video_audio_layout must be one of {VIDEO_AUDIO_LAYOUTS}, got {layout!r}")
        if videos is not None:
            videos = _flatten_videos(videos)
            sounds = [self._video_sound(v, i, use_audio_in_video) for i, v in enumerate(videos)]
            if layout == "interleaved":
                videos, sounds = self._chunked(videos, sounds, kwargs.get("num_frames"), kwargs.get("fps"))
            if any(sound is not None for sound in sounds):
                audio = self._place_video_sound(text, audio, sounds)
                videos = [
                    v if sound is None else _Heard(v, len(sound) if isinstance(sound, list) else 1)
                    for v, sound in zip(videos, sounds)
                ]
        return super().__call__(images=images, text=text, videos=videos, audio=audio, **kwargs)

    def _video_sound(self, video, index: int, default: bool):
        """The video's sound at the extractor's rate when it is to be heard (its own `"audio"` flag, else
        `default`), else None."""
        rate = self.feature_extractor.sampling_rate if self.feature_extractor is not None else None
        # The audio tower's window: a longer sound is refused, whether decoded here or already (a VideoClip).
        max_seconds = getattr(self.feature_extractor, "chunk_length", None)
        what = f"sound of video {index}"
        if isinstance(video, VideoClip):
            return decode_audio(video.audio, rate, source_rate=video.sampling_rate, max_seconds=max_seconds, what=what)
        wanted = video.get("audio", default) if isinstance(video, dict) else default
        if isinstance(wanted, np.ndarray):  # already decoded sound (at `sampling_rate`, else the extractor's rate)
            source_rate = video.get("sampling_rate")
            return decode_audio(wanted, rate, source_rate=source_rate, max_seconds=max_seconds, what=what)
        if wanted is None or wanted is False:
            return None
        if self.audio_model_type is None or rate is None:
            raise ValueError("This model has no audio tower: it cannot hear the sound of a video.")
        source = _video_source(video)
        if isinstance(source, (list, tuple, np.ndarray)):
            raise MediaDecodeError(
                f"video {index} is a list of frames: it has no sound to hear",
                kind="no_audio",
                hint="give the video file, or a VideoClip with its audio",
            )
        span = video if isinstance(video, dict) else {}
        return decode_video_audio(
            source,
            rate,
            start=span.get("start"),
            end=span.get("end"),
            missing=span.get("missing_audio", "error"),
            max_seconds=max_seconds,
            what=f"video {source if _is_path(source) else index}",
        )

    def _chunked(self, videos: list, sounds: list, num_frames, fps) -> tuple[list, list]:
        """Interleaved layout: each heard video's frames are decoded now, so that its sound can be cut into one
        chunk per group of `video_temporal_pool` frames (each chunk then follows its frames)."""
        out_videos, out_sounds = [], []
        for i, (video, sound) in enumerate(zip(videos, sounds)):
            if sound is not None:
                frames = self._decode_frames(video, i, num_frames, fps)
                groups = math.ceil(len(frames) / self.video_temporal_pool)
                video, sound = VideoClip(frames, sound, 0), list(np.array_split(sound, groups))
            out_videos.append(video)
            out_sounds.append(sound)
        return out_videos, out_sounds

    def _place_video_sound(self, text, audio, sounds: list) -> list:
        """All audio clips in placeholder order: each heard video's sound goes right after that `<video>` (frames
        then audio), between the `<audio>` clips given before and after it. The text is not changed: the video's
        replacement carries the audio tokens (`get_text_with_replacements`), so assistant masks stay aligned."""
        if text is None:
            raise ValueError("A video with sound needs a prompt holding its <video> placeholder.")
        texts = [text] if isinstance(text, str) else list(text)
        clips = (
            [] if audio is None else ([audio] if isinstance(audio, np.ndarray) and audio.ndim == 1 else list(audio))
        )
        given, heard, placed = iter(clips), iter(sounds), []
        for sample in texts:
            for token in re.findall(self._placeholder_pattern, sample):
                if token == self.audio_token:
                    placed.append(next(given, None))
                else:
                    sound = next(heard, None)
                    placed.extend(sound if isinstance(sound, list) else [sound])  # interleaved: one clip per chunk
        # a count mismatch is left for `validate_inputs` to name
        return [clip for clip in placed if clip is not None] + list(given)

    @property
    def _placeholder_pattern(self) -> str:
        return f"{re.escape(self.video_token)}|{re.escape(self.audio_token)}"

    def get_text_with_replacements(self, text, images_replacements=[], videos_replacements=[], audio_replacements=[]):  # noqa: B006 - the mixin's signature
        """A heard video's replacement holds `_SOUND_MARK` after its frames (or after each group of frames when
        interleaved): each mark becomes the next clip's audio tokens (clips are in placeholder order)."""
        if any(_SOUND_MARK in r for r in videos_replacements):
            videos_iter, audio_iter = iter(videos_replacements), iter(audio_replacements)
            videos_replacements, plain_audio = [], []
            for sample in text:
                for token in re.findall(self._placeholder_pattern, sample):
                    if token == self.audio_token:
                        plain_audio.append(next(audio_iter))
                        continue
                    replacement = next(videos_iter)
                    parts = replacement.split(_SOUND_MARK)
                    replacement = parts[0] + "".join(next(audio_iter) + part for part in parts[1:])
                    videos_replacements.append(replacement)
            audio_replacements = plain_audio
        return super().get_text_with_replacements(text, images_replacements, videos_replacements, audio_replacements)

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
        heard = sum(v.chunks for v in videos or [] if isinstance(v, _Heard))
        plain_audio = (list(audio)[: len(audio) - heard] or None) if audio is not None and heard else audio
        super().validate_inputs(images=images, text=without_videos, videos=None, audio=plain_audio, **kwargs)
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
        clips = [self._decode_frames(getattr(v, "video", v), i, num_frames, fps) for i, v in enumerate(videos)]
        frames = [frame for clip in clips for frame in clip]
        pixel_values = self.image_processor(frames, **kwargs)["pixel_values"]
        counts = [len(clip) for clip in clips]
        replacements = [self._video_replacement(n, v) for n, v in zip(counts, videos)]
        return {"pixel_values_videos": pixel_values, "video_num_frames": counts}, replacements

    def _video_replacement(self, num_frames: int, video) -> str:
        """Frame tokens per group of `video_temporal_pool` frames; a heard video's audio goes at `_SOUND_MARK`s:
        after all the frames, or (interleaved: one clip per group) after each group."""
        groups = math.ceil(num_frames / self.video_temporal_pool)
        group = self.video_token * self.num_image_tokens
        chunks = video.chunks if isinstance(video, _Heard) else 0
        if chunks <= 1:
            return group * groups + (_SOUND_MARK if chunks else "")
        if chunks != groups:
            raise ValueError(f"a video has {groups} frame groups but its sound was cut into {chunks} chunks")
        return (group + _SOUND_MARK) * groups

    def _decode_frames(self, video, index: int, num_frames, fps) -> list:
        if isinstance(video, VideoClip):
            video = video.frames
        span = video if isinstance(video, dict) else {}
        source = _video_source(video)
        return decode_video(
            source,
            num_frames,
            fps,
            self.video_max_frames,
            what=f"video {source if _is_path(source) else index}",
            start=span.get("start"),
            end=span.get("end"),
            max_source_frames=self.video_max_source_frames,
        )

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

    def _adjust_assistant_masks_indices(self, processed_dict, generation_indices):
        """`return_assistant_tokens_mask`: the mixin's rule (a token is labelled when its character span overlaps a
        `{% generation %}` span, shifted past the placeholders expanded before it), with the token loop done as one
        tensor comparison per batch instead of a Python loop over every token of every sample (it was ~3/4 of the
        collator's time). Same masks, same types."""
        import bisect

        import torch

        offsets = processed_dict.pop("offset_mapping")
        input_ids = processed_dict["input_ids"]
        replacements = processed_dict.pop("text_replacement_offsets", None) or [[]] * len(input_ids)
        rows, starts, ends = [], [], []
        for i, spans in enumerate(generation_indices):
            placeholder_ends = [r["span"][1] for r in replacements[i]]
            gained = [0] + [r["new_span"][1] - r["span"][1] for r in replacements[i]]
            for span in spans:
                start, end = (c + gained[bisect.bisect_right(placeholder_ends, c)] for c in span)
                rows.append(i)
                starts.append(start)
                ends.append(end)
        as_tensor = torch.is_tensor(input_ids)
        lengths = [len(ids) for ids in input_ids]
        width = max(lengths, default=0)
        if torch.is_tensor(offsets):
            token_spans = offsets.long()
        else:  # lists (no return_tensors), maybe ragged: padded with (0, 0), which overlaps no span
            token_spans = torch.zeros(len(input_ids), width, 2, dtype=torch.long)
            for i, row in enumerate(offsets):
                token_spans[i, : lengths[i]] = torch.as_tensor(row, dtype=torch.long).reshape(-1, 2)
        masks = torch.zeros(len(input_ids), width, dtype=torch.long)
        if rows:
            index = torch.tensor(rows)
            tok = token_spans[index]  # [spans, width, 2]
            hit = (tok[..., 0] < torch.tensor(ends)[:, None]) & (tok[..., 1] > torch.tensor(starts)[:, None])
            masks.index_add_(0, index, hit.long()).clamp_(max=1)
        processed_dict["assistant_masks"] = masks if as_tensor else [m[:n].tolist() for m, n in zip(masks, lengths)]
        return processed_dict

    def _get_num_multimodal_tokens(self, image_sizes=None, audio_lengths=None, **kwargs) -> MultiModalData:
        r"""
        Placeholder tokens each item expands to, for serving engines (vLLM) that size a request before processing it.

        Args:
            image_sizes (`list[list[int]]`, *optional*): `(height, width)` per image. Every image is resized to the
                tower's input, so each one takes `num_image_tokens` tokens in one patch.
            audio_lengths (`list[int]`, *optional*): samples per clip at the feature extractor's rate (transformers'
                convention); clips longer than the encoder's window count as the window.

        Returns:
            `MultiModalData`: `num_image_tokens` and `num_image_patches` per image, `num_audio_tokens` per clip.
        """
        data = {}
        if image_sizes is not None:
            data["num_image_tokens"] = [self.num_image_tokens] * len(image_sizes)
            data["num_image_patches"] = [1] * len(image_sizes)
        if audio_lengths is not None:
            extractor = self.feature_extractor
            # The extractor pads/truncates to its window, then keeps one mask entry per hop: ceil(samples / hop) frames.
            frames = [math.ceil(min(int(n), extractor.n_samples) / extractor.hop_length) for n in audio_lengths]
            data["num_audio_tokens"] = [
                audio_token_count(n, self.audio_model_type, self.audio_pool_stride) for n in frames
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


# Ends the replacement of a heard video until its audio tokens are known (see `get_text_with_replacements`).
_SOUND_MARK = "\x00sound\x00"


@dataclass(frozen=True)
class _Heard:
    """A video (path, dict, frames or `VideoClip`) whose sound was decoded and placed among the audio clips."""

    video: object
    chunks: int = 1  # sound clips: 1 (frames then audio), or one per frame group (interleaved)


VIDEO_AUDIO_LAYOUTS = ("frames_then_audio", "interleaved")


def _video_source(video):
    """A video dict's file or frames (`path`, `bytes`, `video` or `frames`); anything else is its own source."""
    if not isinstance(video, dict):
        return video
    for key in ("bytes", "path", "video", "frames", "url"):
        if video.get(key) is not None:
            return video[key]
    raise ValueError(f"A video dict needs 'path', 'bytes' or 'frames'; got keys {sorted(video)}.")


def video_has_sound(video, use_audio_in_video: bool = False) -> bool:
    """Whether the processor will hear this video (its own `"audio"` flag, else `use_audio_in_video`)."""
    if isinstance(video, VideoClip):
        return True
    if isinstance(video, dict) and "audio" in video:
        return video["audio"] is not None and video["audio"] is not False
    return bool(use_audio_in_video)


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
    if isinstance(videos, (str, os.PathLike, dict, VideoClip)):
        return [videos]
    if isinstance(videos, np.ndarray) and videos.ndim == 4:
        return [_frames_of_array(videos)]
    if isinstance(videos, (list, tuple)) and videos and all(_is_frame(f) and np.ndim(f) in (2, 3) for f in videos):
        return [list(videos)]  # one video given as a flat list of frames
    flat = []
    for item in videos:
        if isinstance(item, (dict, VideoClip, _Heard)):
            flat.append(item)
        elif isinstance(item, np.ndarray) and item.ndim == 4:
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


__all__ = ["OpenMindProcessor", "audio_token_count", "video_has_sound"]
