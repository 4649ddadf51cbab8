"""Media decoding on real files: odd image modes are converted, broken files raise `DataError`."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from openmind_hf.data.errors import DataError
from openmind_hf.data.media import decode_sample_media, load_audio, load_image, load_video_frames, resolve_media_paths


def _jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **kwargs)
    return buffer.getvalue()


def test_exif_rotation_is_applied(tmp_path):
    # A 40x20 picture, left half red; EXIF orientation 6 means "rotate 90 degrees clockwise to display".
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_jpeg_bytes(Image.fromarray(pixels), exif=exif.tobytes()))
    image = load_image(str(path))
    assert image.size == (20, 40)  # upright: portrait
    top, bottom = np.asarray(image)[5, 10], np.asarray(image)[35, 10]
    assert top[0] > 200 and top[1] < 60  # the red half is on top after the clockwise turn
    assert bottom[0] < 60


def test_cmyk_16bit_palette_alpha_and_gray_become_rgb(tmp_path):
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(cmyk)  # pure red in CMYK
    assert load_image(str(cmyk)).getpixel((4, 4))[0] > 200

    sixteen = tmp_path / "gray16.png"
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(sixteen)
    image = load_image(str(sixteen))
    assert Image.open(sixteen).mode.startswith("I")
    assert image.mode == "RGB" and abs(image.getpixel((0, 0))[0] - 128) <= 1  # scaled, not clipped to 255

    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.info["transparency"] = 0
    path = tmp_path / "palette.png"
    palette.save(path, transparency=0)
    assert load_image(str(path)).getpixel((0, 0)) == (0, 0, 255)

    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red -> white background
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)
    la = Image.new("LA", (8, 8), (10, 255))
    assert load_image(la).getpixel((0, 0)) == (10, 10, 10)
    assert load_image(np.zeros((4, 4), np.uint8)).mode == "RGB"
    png = io.BytesIO()
    Image.new("L", (4, 4), 7).save(png, format="PNG")
    assert load_image({"bytes": png.getvalue(), "path": "x.png"}).getpixel((0, 0)) == (7, 7, 7)


def test_broken_images_raise_data_error(tmp_path):
    good = _jpeg_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 2])
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(png, format="PNG")
    (tmp_path / "truncated.png").write_bytes(png.getvalue()[:60])
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (tmp_path / "empty.jpg").write_bytes(b"")
    cases = {
        "truncated.jpg": "cannot decode image",
        "truncated.png": "cannot decode image",
        "corrupt.png": "cannot decode image",
        "empty.jpg": "empty (0 bytes)",
        "missing.jpg": "file not found",
    }
    for name, expected in cases.items():
        with pytest.raises(DataError, match=re.escape(expected)):
            load_image(str(tmp_path / name))
    with pytest.raises(DataError, match="remote URL"):
        load_image("https://example.com/a.png")


def test_audio_is_mono_float32_at_16k(tmp_path):
    rate = 44_100
    t = np.arange(rate) / rate
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1).astype(np.float32) * 0.5
    path = tmp_path / "stereo.flac"
    sf.write(path, stereo, rate)
    audio = load_audio(str(path))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - 16_000) <= 2
    # The tone survives resampling: its spectrum peaks at 440 Hz (1 Hz bins for a 1 s clip at 16 kHz).
    assert abs(np.argmax(np.abs(np.fft.rfft(audio))) - 440) <= 2
    hf_dict = load_audio({"array": np.ones(8000), "sampling_rate": 8000})
    assert hf_dict.shape == (16_000,)


def test_broken_audio_raises_data_error(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1), np.float32), 16_000)
    (tmp_path / "garbage.wav").write_bytes(b"RIFF" + b"\x00" * 10 + b"nonsense" * 10)
    (tmp_path / "zero.wav").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        load_audio(str(tmp_path / "empty.wav"))
    with pytest.raises(DataError, match="cannot decode audio"):
        load_audio(str(tmp_path / "garbage.wav"))
    with pytest.raises(DataError, match=re.escape("(0 bytes)")):
        load_audio(str(tmp_path / "zero.wav"))
    with pytest.raises(DataError, match="NaN"):
        load_audio(np.array([0.0, np.nan]))


def write_video(path, num_frames: int = 20, fps: int = 10, size: int = 32) -> None:
    """An mp4 whose frame i is a flat gray of level 10 * i (so a sampled frame tells its index)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 10 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_video_frames_are_sampled_evenly(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path)
    frames = load_video_frames(str(path), num_frames=4)
    assert len(frames) == 4 and all(f.mode == "RGB" and f.size == (32, 32) for f in frames)
    levels = [np.asarray(f).mean() / 10 for f in frames]
    # centres of 4 equal segments of 20 frames: indices ~2, 7, 12, 17
    assert np.allclose(levels, [2, 7, 12, 17], atol=1.0), levels
    assert len(load_video_frames(str(path), fps=2)) == 4  # 2 s at 2 frames/s
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 100)
    with pytest.raises(DataError, match="video"):
        load_video_frames(str(tmp_path / "bad.mp4"))


def test_decode_sample_media_names_sample_and_file(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "ok.png")
    sample = resolve_media_paths({"id": "s9", "images": ["ok.png", "gone.png"], "audios": [], "videos": []}, tmp_path)
    assert sample["images"][0] == str(tmp_path / "ok.png")
    with pytest.raises(DataError) as info:
        decode_sample_media(sample, source="train.jsonl", line=4)
    assert str(info.value).startswith("train.jsonl:4 (sample 's9'): image file not found")
    decoded = decode_sample_media({**sample, "images": sample["images"][:1]})
    assert isinstance(decoded["images"][0], Image.Image)
