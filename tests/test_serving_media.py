"""Media decoding, request schema and text splitting of the server, on real bytes (no server needed)."""

from __future__ import annotations

import base64
import io
import random
import struct
import time
import zlib

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from openmind_hf.serving.decoding import CompletionText, IncrementalDetokenizer
from openmind_hf.serving.errors import describe_exception, describe_validation_errors
from openmind_hf.serving.media import (
    MediaError,
    MediaLimits,
    decode_audio,
    decode_base64,
    decode_image,
    split_data_uri,
)
from openmind_hf.serving.schemas import ChatCompletionRequest

LIMITS = MediaLimits(max_pixels=1_000_000, max_audio_seconds=2.0)


def png_bytes(size=(40, 30), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "red" if mode == "RGB" else 0).save(buffer, "PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, followed by a few bytes of junk instead of real image data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"\x00junk") + chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real 8x8 JPEG whose SOF0 marker is patched to claim width x height."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "blue").save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def audio_bytes(seconds=0.5, rate=8000, fmt="WAV", subtype=None, channels=1) -> bytes:
    samples = np.sin(np.arange(int(seconds * rate)) / 7).astype(np.float32) * 0.5
    if channels > 1:
        samples = np.stack([samples] * channels, axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


# ---------------------------------------------------------------- images


def test_decode_image_reads_real_png_and_jpeg():
    assert decode_image(png_bytes((40, 30)), LIMITS).size == (40, 30)
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12)).save(buffer, "JPEG")
    assert decode_image(buffer.getvalue(), LIMITS).size == (16, 12)


@pytest.mark.parametrize("make", [png_header_only, jpeg_claiming], ids=["png", "jpeg"])
def test_pixel_limit_is_checked_from_the_header_before_decoding(make):
    # 5000x5000 is under PIL's own bomb threshold, so only our header check can refuse it; the pixel data is junk,
    # so had decoding been attempted the error would be "truncated or corrupt", not the size.
    started = time.perf_counter()
    with pytest.raises(MediaError, match="5000x5000 pixels; the limit is 1000000"):
        decode_image(make(5000, 5000), LIMITS)
    assert time.perf_counter() - started < 0.5


def test_huge_claimed_image_is_refused_quickly():
    started = time.perf_counter()
    with pytest.raises(MediaError, match="pixel"):
        decode_image(png_header_only(100_000, 100_000), LIMITS)
    assert time.perf_counter() - started < 0.5


def test_image_within_limit_but_truncated_is_refused_as_corrupt():
    with pytest.raises(MediaError, match="truncated or corrupt"):
        decode_image(png_header_only(100, 100), LIMITS)


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", b"%PDF-1.4 ...", b"GIF89a" + b"\x00" * 3],
    ids=["empty", "text", "pdf", "short-gif"],
)
def test_non_images_are_refused_without_leaking_details(data):
    with pytest.raises(MediaError) as info:
        decode_image(data, LIMITS)
    assert "0x" not in str(info.value) and "BytesIO" not in str(info.value)


def test_formats_outside_the_allow_list_are_refused():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "TIFF")
    with pytest.raises(MediaError, match="not a readable"):
        decode_image(buffer.getvalue(), LIMITS)


def test_data_uri_and_base64_parsing():
    raw = png_bytes()
    mime, data = split_data_uri("data:image/png;base64," + base64.b64encode(raw).decode(), "image 0")
    assert (mime, data) == ("image/png", raw)
    assert decode_base64(base64.urlsafe_b64encode(raw).decode(), "x") == raw
    assert decode_base64("aGVs\nbG8=", "x") == b"hello"  # whitespace is allowed
    for bad in ("!!!!", "aGVsbG8", "aGVs bG8=*", "ÿÿÿÿ"):
        with pytest.raises(MediaError, match="not valid base64"):
            decode_base64(bad, "x")
    for bad in ("data:image/png,rawbytes", "data:image/png;base64", "image/png;base64,AAAA", "data:"):
        with pytest.raises(MediaError):
            split_data_uri(bad, "image 0")


# ---------------------------------------------------------------- audio


@pytest.mark.parametrize("fmt,declared", [("WAV", "wav"), ("FLAC", "flac"), ("MP3", "mp3")])
def test_decode_audio_formats_resample_to_16k_mono(fmt, declared):
    samples = decode_audio(audio_bytes(0.5, 8000, fmt, channels=2), declared, LIMITS, 16000)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - 8000) < 1200  # 0.5 s at 16 kHz (mp3 adds encoder padding)
    assert np.abs(samples).max() > 0.1


@pytest.mark.parametrize(
    "data,declared",
    [
        (audio_bytes(fmt="OGG", subtype="VORBIS"), "wav"),  # an unsupported codec, declared as wav
        (audio_bytes(fmt="OGG", subtype="VORBIS"), "mp3"),
        (audio_bytes(fmt="FLAC"), "wav"),  # a supported codec, but not the declared one
        (audio_bytes(fmt="WAV"), "mp3"),
        (audio_bytes(fmt="AIFF"), "wav"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "wav"),
        (png_bytes(), "flac"),
    ],
    ids=["ogg-as-wav", "ogg-as-mp3", "flac-as-wav", "wav-as-mp3", "aiff", "broken-riff", "png"],
)
def test_audio_with_wrong_or_unsupported_codec_is_refused(data, declared):
    with pytest.raises(MediaError) as info:
        decode_audio(data, declared, LIMITS, 16000)
    assert "0x" not in str(info.value)


def test_audio_duration_limit():
    with pytest.raises(MediaError, match=r"lasts 3\.0 s; the limit is 2 s"):
        decode_audio(audio_bytes(3.0), "wav", LIMITS, 16000)
    with pytest.raises(MediaError, match="format must be"):
        decode_audio(audio_bytes(), "ogg", LIMITS, 16000)


# ---------------------------------------------------------------- request schema


def _request(**overrides):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **overrides}
    return ChatCompletionRequest.model_validate(body)


@pytest.mark.parametrize(
    "fields,expected",
    [
        ({}, (False, None)),
        ({"chat_template_kwargs": {"enable_thinking": True}}, (True, None)),
        ({"reasoning_effort": "low"}, (True, 256)),
        ({"reasoning_effort": "high"}, (True, 4096)),
        ({"reasoning_effort": "none"}, (False, None)),
        ({"thinking_budget": 7}, (True, 7)),
        ({"thinking_budget": 7, "reasoning_effort": "high"}, (True, 7)),
        ({"chat_template_kwargs": {"enable_thinking": False}, "reasoning_effort": "none"}, (False, None)),
        ({"chat_template_kwargs": {"enable_thinking": True}, "thinking_budget": 3}, (True, 3)),
    ],
)
def test_thinking_switch(fields, expected):
    assert _request(**fields).thinking() == expected


def test_thinking_contradiction_is_an_error():
    with pytest.raises(ValueError, match="enable_thinking"):
        _request(chat_template_kwargs={"enable_thinking": False}, thinking_budget=5).thinking()


def test_validation_errors_never_quote_the_input():
    secret = "SECRET-PAYLOAD-" + "A" * 40
    bodies = [
        {"model": "m", "messages": [{"role": secret, "content": "x"}]},
        {"model": "m", "messages": [{"role": "user", "content": [{"type": secret, "text": "x"}]}]},
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 5, secret: 1}]}]},
        {"model": "m", "messages": "x" + secret},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": secret},
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": secret}}]}]},
    ]  # fmt: skip
    from pydantic import ValidationError

    for body in bodies:
        with pytest.raises(ValidationError) as info:
            ChatCompletionRequest.model_validate(body)
        message = describe_validation_errors(info.value.errors(include_input=False, include_url=False))
        assert secret not in message and "SECRET" not in message, message
        assert message.startswith("Invalid request:")


def test_describe_exception_names_type_and_place_not_message():
    try:
        Image.open(io.BytesIO(b"SECRET bytes"))
    except Exception as exc:  # PIL's message holds the BytesIO repr with its memory address
        assert "0x" in str(exc)
        text = describe_exception(exc)
    assert "UnidentifiedImageError" in text and "0x" not in text and "SECRET" not in text


# ---------------------------------------------------------------- text splitting


def _split(chunks, thinking, opens, stop=None):
    text = CompletionText(thinking, opens, stop)
    deltas = [d for chunk in chunks for d in text.feed(chunk)] + text.finish()
    joined = {k: "".join(d for kind, d in deltas if kind == k) for k in ("reasoning", "content")}
    assert joined == {"reasoning": text.reasoning, "content": text.content}
    return text.reasoning, text.content


@pytest.mark.parametrize(
    "thinking,opens,stop,expected",
    [
        (True, False, None, ("weigh the options", "Pick B. END then more")),
        (True, True, None, ("weigh the options", "Pick B. END then more")),
        (True, False, ["END"], ("weigh the options", "Pick B. ")),
        # Thinking off: a block the model writes anyway is dropped (issue 14 item 6), stops apply to the answer.
        (False, False, ["END"], ("", "Pick B. ")),
        (False, False, ["</thi", "zzz"], ("", "Pick B. END then more")),
    ],
)
def test_stream_split_matches_whole_text_for_every_chunking(thinking, opens, stop, expected):
    full = "<think>\nweigh the options\n</think>\n\nPick B. END then more"
    rng = random.Random(0)
    assert _split([full], thinking, opens, stop) == expected
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(full)), rng.randint(1, 12)))
        pieces = [full[a:b] for a, b in zip([0, *cuts], [*cuts, len(full)])]
        assert _split(pieces, thinking, opens, stop) == expected


def test_thinking_on_without_think_tag_is_all_answer_unless_the_prompt_opened_the_block():
    assert _split(["plain answer"], True, False) == ("", "plain answer")
    assert _split(["still thinking"], True, True) == ("still thinking", "")


def test_incremental_detokenizer_never_splits_characters(tiny_model_and_processor):
    tokenizer = tiny_model_and_processor[1].tokenizer
    text = "héllo wörld — ünïcode 42 ✓ done"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    detok = IncrementalDetokenizer(tokenizer)
    pieces = [detok.push(i) for i in ids]
    assert "".join(pieces) == tokenizer.decode(ids)
    assert not any("\ufffd" in p for p in pieces)


def test_pil_pixel_limit_is_restored_whatever_order_apps_stop_in():
    # Two apps (tests, the web chat's in-process server) may stop in the order they started: PIL's own value must
    # come back, never the first app's limit.
    from PIL import Image

    from openmind_hf.serving.app import _PIXEL_LIMITS

    original = Image.MAX_IMAGE_PIXELS
    _PIXEL_LIMITS.start(1_000_000)
    _PIXEL_LIMITS.start(4_000_000)
    assert Image.MAX_IMAGE_PIXELS == 1_000_000  # the strictest running app's
    _PIXEL_LIMITS.stop(1_000_000)
    assert Image.MAX_IMAGE_PIXELS == 4_000_000
    _PIXEL_LIMITS.stop(4_000_000)
    assert Image.MAX_IMAGE_PIXELS == original
