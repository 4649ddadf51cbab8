"""OpenMindProcessor: placeholder expansion, media conversion, chat template and thinking switch, bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from openmind_hf.processing.media_decoding import to_rgb


@pytest.fixture(scope="module")
def processor(tiny_model_and_processor):
    return tiny_model_and_processor[1]


@pytest.fixture(scope="module")
def model(tiny_model_and_processor):
    return tiny_model_and_processor[0]


def _count(ids, processor, token):
    return int((ids == processor.tokenizer.convert_tokens_to_ids(token)).sum())


def test_expands_images_and_audio_by_real_length(processor, model):
    short, long = np.zeros(8000, np.float32) + 0.1, np.zeros(32000, np.float32) + 0.1  # 0.5 s and 2 s
    out = processor(
        text=["<image> one <audio>", "<audio><image><image>"],
        images=[[Image.new("RGB", (40, 30))], [Image.new("RGB", (10, 10)), Image.new("RGB", (64, 64))]],
        audio=[short, long],
        padding=True,
        return_tensors="pt",
    )
    assert out["pixel_values"].shape == (3, 3, 32, 32)
    assert out["input_features"].shape == (2, 40, 200)
    per_sample_audio = [_count(row, processor, "<audio>") for row in out["input_ids"]]
    # 0.5 s = 50 mel frames -> 25 encoder frames -> 7 tokens; 2 s = 200 -> 100 -> 25 tokens.
    expected = [model.config.num_audio_tokens(int(m.sum())) for m in out["feature_attention_mask"]]
    assert per_sample_audio == expected == [7, 25]
    assert [_count(row, processor, "<image>") for row in out["input_ids"]] == [16, 32]
    model(**out)  # the model agrees with every count


def test_placeholder_media_mismatch_errors(processor):
    image = Image.new("RGB", (8, 8))
    with pytest.raises(ValueError, match="1 <image> tokens and 2 images"):
        processor(text=["<image>"], images=[image, image])
    with pytest.raises(ValueError, match="no images were passed"):
        processor(text=["<image> hi"])
    with pytest.raises(ValueError, match="audio"):
        processor(text=["<audio> <audio>"], audio=[np.ones(1600, np.float32)])
    with pytest.raises(ValueError, match="2 <video> tokens but 1 videos"):
        processor(text=["<video><video>"], videos=[[image, image]])


def test_empty_and_bad_audio(processor):
    with pytest.raises(ValueError, match="empty"):
        processor(text=["<audio>"], audio=[np.zeros(0, np.float32)])
    with pytest.raises(ValueError, match="NaN"):
        processor(text=["<audio>"], audio=[np.full(100, np.nan, np.float32)])


def test_audio_is_resampled_and_made_mono(processor):
    clip_8k = np.sin(np.linspace(0, 200, 8000)).astype(np.float32)  # 1 s at 8 kHz
    out = processor(text=["<audio>"], audio=[clip_8k], sampling_rate=8000, return_tensors="pt")
    assert int(out["feature_attention_mask"].sum()) == 100  # 1 s at 16 kHz = 100 mel frames
    stereo = np.stack([clip_8k, clip_8k])
    out2 = processor(text=["<audio>"], audio=[stereo], sampling_rate=8000, return_tensors="pt")
    torch.testing.assert_close(out2["input_features"], out["input_features"])


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "CMYK", "I;16", "I", "F", "1"])
def test_image_modes_become_rgb(mode, processor):
    image = Image.new("RGB", (20, 12), (250, 10, 10)).convert(mode) if mode not in ("I;16", "I", "F") else None
    if image is None:
        image = Image.fromarray((np.arange(240).reshape(12, 20) * 250).astype(np.uint16))
        image = image.convert(mode) if mode != "I;16" else image
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == (20, 12)
    out = processor(text=["<image>"], images=[image], return_tensors="pt")
    assert torch.isfinite(out["pixel_values"]).all()


def test_sixteen_bit_images_keep_their_range():
    gradient = (np.linspace(0, 65535, 256).reshape(16, 16)).astype(np.uint16)
    image = Image.fromarray(gradient)
    assert image.mode == "I;16"
    rgb = np.asarray(to_rgb(image))
    assert rgb.min() == 0 and rgb.max() == 255  # not clipped to white


def test_exif_rotation_is_applied():
    image = Image.new("RGB", (30, 10), (0, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes())
    assert to_rgb(Image.open(io.BytesIO(buffer.getvalue()))).size == (10, 30)


def test_video_frames_and_temporal_pooling(processor, model, tmp_path):
    import av

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 20, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    out = processor(text=["Watch <video> now"], videos=[str(path)], return_tensors="pt")
    # Budget 4 frames, pooled in pairs -> 2 groups x 16 tokens.
    assert out["video_num_frames"].tolist() == [4]
    assert out["pixel_values_videos"].shape == (4, 3, 32, 32)
    assert _count(out["input_ids"][0], processor, "<video>") == 32
    assert model(**out).logits.shape[1] == out["input_ids"].shape[1]
    with pytest.raises(ValueError, match="cannot decode video .*missing.mp4"):
        processor(text=["<video>"], videos=[str(tmp_path / "missing.mp4")])
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="cannot decode video .*junk.mp4"):
        processor(text=["<video>"], videos=[str(tmp_path / "junk.mp4")])


def test_chat_template_thinking_switch_and_masks(processor):
    chat = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "image", "image": Image.new("RGB", (8, 8))}, {"type": "text", "text": "How many?"}],
        },
        {"role": "assistant", "content": "3", "reasoning_content": "I see 3 circles."},
    ]
    off = processor.apply_chat_template(chat, tokenize=False)
    on = processor.apply_chat_template(chat, tokenize=False, enable_thinking=True)
    assert "<think>\n\n</think>\n\n3<|im_end|>" in off and "I see" not in off
    assert "<think>\nI see 3 circles.\n</think>\n\n3<|im_end|>" in on
    prompt_off = processor.apply_chat_template(chat[:2], tokenize=False, add_generation_prompt=True)
    prompt_on = processor.apply_chat_template(
        chat[:2], tokenize=False, add_generation_prompt=True, enable_thinking=True
    )
    assert prompt_off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert prompt_on.endswith("<|im_start|>assistant\n")
    # Assistant masks: with thinking off only the answer is labelled; with it on the trace is too.
    tok = processor.tokenizer
    for enable, expected in ((False, "3<|im_end|>"), (True, "<think>\nI see 3 circles.\n</think>\n\n3<|im_end|>")):
        out = processor.apply_chat_template(chat, tokenize=True, return_dict=True, return_tensors="pt",
                                            return_assistant_tokens_mask=True, enable_thinking=enable)  # fmt: skip
        labelled = out["input_ids"][0][out["assistant_masks"][0].bool()]
        assert tok.decode(labelled) == expected
    # The thinking markers survive skip_special_tokens; the media placeholders do not.
    ids = tok("<think>x</think><image>", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "<think>x</think>"
