"""A validated request -> model inputs: counts and decodes media, checks text, applies the chat template.

Media reach the processor only as decoded objects (PIL images, float32 arrays), never as strings, so nothing in
transformers gets a chance to open a path or fetch a URL on the client's behalf.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import torch

from .errors import APIError, bad_request, describe_exception
from .fetch import FetchRefused, MediaFetcher
from .media import MediaError, MediaLimits, decode_audio, decode_base64, decode_image, decode_video, split_data_uri
from .schemas import ChatCompletionRequest

logger = logging.getLogger("openmind_hf.serving")


@dataclass(frozen=True)
class PromptLimits:
    r"""
    Args:
        max_images (`int`): images per request.
        max_audios (`int`): audio clips per request.
        media (`MediaLimits`): per-item pixel and duration limits.
    """

    max_images: int
    max_audios: int
    media: MediaLimits


@dataclass
class Prompt:
    """Model inputs for one request (batch of 1) and what the response needs to know about them."""

    inputs: dict
    prompt_tokens: int
    opens_thinking: bool  # the prompt ends inside an open `<think>` block


class PromptBuilder:
    r"""
    Builds model inputs from a `ChatCompletionRequest`.

    Args:
        processor (`ProcessorMixin`): the model's processor (chat template, tokenizer, image/audio processors).
        limits (`PromptLimits`): media counts and sizes.
        fetcher (`MediaFetcher`, *optional*): fetches http(s) image URLs; without it only data: URIs are accepted.
    """

    def __init__(self, processor, limits: PromptLimits, fetcher: MediaFetcher | None = None):
        tokenizer = processor.tokenizer
        self.accepts_images = getattr(processor, "image_processor", None) is not None and (
            getattr(processor, "num_image_tokens", 1) > 0
        )
        extractor = getattr(processor, "feature_extractor", None)
        self.accepts_audio = extractor is not None and getattr(processor, "audio_model_type", "audio") is not None
        self.sampling_rate = extractor.sampling_rate if extractor is not None else 16000
        window = getattr(extractor, "chunk_length", None)
        if self.accepts_audio and window and window < limits.media.max_audio_seconds:
            # Longer clips would be cut to the encoder's window without a word; refuse them instead.
            limits = replace(limits, media=replace(limits.media, max_audio_seconds=float(window)))
        self.processor, self.limits, self.fetcher = processor, limits, fetcher
        # Special tokens typed as text would forge turns or media slots: refuse them.
        self.reserved = sorted(
            {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
            | {getattr(processor, n) for n in ("image_token", "audio_token", "video_token") if hasattr(processor, n)}
        )
        vocab = tokenizer.get_vocab()
        self.think_ids = (vocab.get("<think>"), vocab.get("</think>"))

    @property
    def supports_thinking(self) -> bool:
        return None not in self.think_ids

    def count_media(self, request: ChatCompletionRequest) -> tuple[int, int]:
        images = audios = 0
        for message in request.messages:
            if isinstance(message.content, list):
                # a video counts as an image (frames), and as an audio clip when its sound is heard
                images += sum(part.type in ("image_url", "video_url") for part in message.content)
                audios += sum(
                    part.type == "input_audio" or (part.type == "video_url" and part.video_url.audio)
                    for part in message.content
                )
        return images, audios

    def build(self, request: ChatCompletionRequest, enable_thinking: bool) -> Prompt:
        """Raises `APIError` (4xx) for anything the client must fix."""
        images, audios = self.count_media(request)
        if images and not self.accepts_images:
            raise bad_request("This model does not accept images.", code="unsupported_modality")
        if audios and not self.accepts_audio:
            raise bad_request("This model does not accept audio.", code="unsupported_modality")
        if images > self.limits.max_images:
            raise bad_request(f"{images} images sent; the limit is {self.limits.max_images} per request.")
        if audios > self.limits.max_audios:
            raise bad_request(f"{audios} audio clips sent; the limit is {self.limits.max_audios} per request.")
        messages = [self._message(i, m) for i, m in enumerate(request.messages)]
        try:
            inputs = self.processor.apply_chat_template(
                [messages],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
                enable_thinking=enable_thinking,
            )
        except (ValueError, TypeError, KeyError) as err:
            # The processor's checks raise these for inputs it cannot take; the type and place go to the log so
            # a server-side cause stays findable, the message (which may quote the input) goes nowhere.
            logger.warning("prompt rejected by the processor: %s", describe_exception(err))
            raise bad_request("The messages could not be turned into a prompt for this model.") from None
        inputs = {k: v for k, v in inputs.items() if v is not None}
        ids = inputs["input_ids"][0]
        return Prompt(inputs=inputs, prompt_tokens=int(ids.numel()), opens_thinking=self._opens_thinking(ids))

    def _opens_thinking(self, ids: torch.Tensor) -> bool:
        if not self.supports_thinking:
            return False
        start, end = (int(x) for x in self.think_ids)
        positions = torch.arange(ids.numel())
        last = lambda token: int(torch.where(ids == token, positions, -1).max())  # noqa: E731
        return last(start) > last(end)

    def _message(self, index: int, message) -> dict:
        role = "system" if message.role == "developer" else message.role
        out = {"role": role}
        if message.role == "assistant" and message.reasoning_content:
            self._check_text(index, message.reasoning_content)
            out["reasoning_content"] = message.reasoning_content
        if message.content is None or isinstance(message.content, str):
            self._check_text(index, message.content or "")
            out["content"] = message.content or ""
            return out
        blocks, n_image, n_audio, n_video = [], 0, 0, 0
        for part in message.content:
            if part.type == "text":
                self._check_text(index, part.text)
                blocks.append({"type": "text", "text": part.text})
            elif part.type == "image_url":
                what = f"messages[{index}] image {n_image}"
                blocks.append({"type": "image", "image": self._image(part.image_url.url, what)})
                n_image += 1
            elif part.type == "video_url":
                what = f"messages[{index}] video {n_video}"
                blocks.append({"type": "video", "video": self._video(part.video_url, what)})
                n_video += 1
            else:
                what = f"messages[{index}] audio {n_audio}"
                blocks.append({"type": "audio", "audio": self._audio(part.input_audio, what)})
                n_audio += 1
        out["content"] = blocks
        return out

    def _check_text(self, index: int, text: str) -> None:
        for token in self.reserved:
            if token in text:
                raise bad_request(
                    f"messages[{index}] contains the reserved token {token!r}: remove it from the text "
                    "(send images and audio as content parts instead of placeholders)."
                )

    def _image(self, url: str, what: str):
        scheme = urlsplit(url[:64]).scheme.lower() if ":" in url[:64] else ""
        try:
            if scheme == "data":
                mime, data = split_data_uri(url, what)
                if mime is not None and not mime.startswith("image/"):
                    raise MediaError(f"{what} is a data: URI whose MIME type is not image/*.")
            elif scheme in ("http", "https"):
                if self.fetcher is None:
                    raise APIError(
                        400,
                        f"{what}: image URLs are not fetched by this server; send the image inline as a "
                        "`data:image/...;base64,` URI (operators can allow domains with --allowed-media-domains).",
                        code="url_fetch_disabled",
                    )
                data, _ = self.fetcher.fetch(url)
            else:
                raise APIError(
                    400,
                    f"{what}: only data: URIs{' and http(s) URLs' if self.fetcher else ''} are accepted; "
                    "local files and other schemes are never read.",
                    code="unsupported_url",
                )
            return decode_image(data, self.limits.media, what)
        except MediaError as err:
            raise bad_request(str(err), code="invalid_media") from None
        except FetchRefused as err:
            raise bad_request(f"{what}: {err}", code="media_url_refused") from None

    def _video(self, video, what: str):
        """A `data:video/...;base64,` URI -> frames, or a `VideoClip` with its sound when `audio` is true."""
        try:
            if urlsplit(video.url[:64]).scheme.lower() != "data":
                raise MediaError(f"{what}: only data: URIs are accepted for videos.")
            mime, data = split_data_uri(video.url, what)
            if mime is not None and not mime.startswith("video/"):
                raise MediaError(f"{what} is a data: URI whose MIME type is not video/*.")
            return decode_video(
                data, self.limits.media, num_frames=getattr(self.processor, "video_max_frames", 8),
                hear=video.audio, missing_audio=video.missing_audio, sampling_rate=self.sampling_rate, what=what,
            )  # fmt: skip
        except MediaError as err:
            raise bad_request(str(err), code="invalid_media") from None

    def _audio(self, audio, what: str):
        try:
            payload = audio.data
            if payload[:5].lower() == "data:":
                _, data = split_data_uri(payload, what)
            else:
                data = decode_base64(payload, what)
            return decode_audio(data, audio.format, self.limits.media, self.sampling_rate, what)
        except MediaError as err:
            raise bad_request(str(err), code="invalid_media") from None


__all__ = ["PromptLimits", "Prompt", "PromptBuilder"]
