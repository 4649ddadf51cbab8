"""A video that is also heard: spans for frames and sound, seeking, limits before decoding, frames-then-audio
placement in the processor, the data path and the recipe flag, the server's `video_url` data URIs, and a toy task
that needs both streams (learned with sound, at chance on the pitch without it)."""

from __future__ import annotations

import base64
import itertools
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from openmind_hf.data.dataset import OpenMindDataset
from openmind_hf.data.errors import DataError
from openmind_hf.data.media import load_audio, load_video_frames
from openmind_hf.data.synthetic import COLORS, write_video
from openmind_hf.processing.collator import OpenMindCollator
from openmind_hf.processing.errors import MediaDecodeError
from openmind_hf.processing.media_decoding import (
    VideoClip,
    decode_video,
    decode_video_audio,
    probe_video,
)

RATE = 16_000
PITCH = {"first": 440.0, "second": 1760.0}


def _peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * RATE / len(samples))


def _two_halves(path: Path, sound: bool = True, seconds_per_half: float = 1.0, fps: int = 8) -> Path:
    """A 2-half video: red frames + 440 Hz, then blue frames + 1760 Hz (frame k's green channel is k, to find it)."""
    per_half = int(fps * seconds_per_half)
    frames = []
    for half, color in enumerate(("red", "blue")):
        for k in range(per_half):
            frame = np.zeros((32, 32, 3), np.uint8)
            frame[:] = COLORS[color]
            frame[:4, :4] = (half * per_half + k) * 10  # a corner that says which frame this is
            frames.append(frame)
    t = np.arange(int(seconds_per_half * RATE)) / RATE
    audio = np.concatenate([0.5 * np.sin(2 * np.pi * PITCH[h] * t) for h in ("first", "second")]).astype(np.float32)
    write_video(path, frames, fps=fps, audio=audio if sound else None)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    return {"sound": _two_halves(root / "sound.mp4"), "silent": _two_halves(root / "silent.mp4", sound=False)}


@pytest.fixture(scope="module")
def processor(tiny_model_and_processor):
    return tiny_model_and_processor[1]


def _frame_index(frame) -> int:
    return round(float(np.asarray(frame)[1, 1].mean()) / 10)


# ------------------------------------------------------------------------------------------------ decoding


def test_container_metadata_is_read_without_decoding(videos):
    header = probe_video(videos["sound"])
    assert (header.duration, header.frames, header.fps, header.has_audio) == (2.0, 16, 8.0, True)
    assert header.audio_sampling_rate == RATE and "mp4" in header.container.split(",")
    assert probe_video(videos["silent"]).has_audio is False


@pytest.mark.parametrize(
    "start,end,half,frames", [(None, 1.0, "first", [1, 4, 6]), (1.0, None, "second", [9, 12, 14])]
)
def test_frames_and_sound_come_from_the_same_span(videos, start, end, half, frames):
    picked = decode_video(videos["sound"], 3, start=start, end=end)
    # segment centres of the 1 s span: 1/6, 1/2, 5/6 s -> frames 1, 4, 6 of that half (8 fps)
    assert [_frame_index(f) for f in picked] == frames
    sound = decode_video_audio(videos["sound"], RATE, start=start, end=end)
    assert len(sound) == RATE
    assert _peak_hz(sound[1000:-1000]) == pytest.approx(PITCH[half], abs=2)


def test_seeking_picks_the_frames_a_full_decode_picks(videos, tmp_path):
    """Targets far apart make the decoder seek (SEEK_AHEAD_SECONDS); the picks match the segment-centre rule."""
    long = tmp_path / "long.mp4"
    frames = [np.full((16, 16, 3), k * 2, np.uint8) for k in range(96)]  # 12 s at 8 fps, a keyframe every 4
    write_video(long, frames, fps=8)
    picked = decode_video(long, 4)
    expected = [int(((i + 0.5) * 12 / 4) * 8) for i in range(4)]  # centres 1.5, 4.5, 7.5, 10.5 s
    assert [round(float(np.asarray(f).mean()) / 2) for f in picked] == expected
    picked = decode_video(long, 2, start=6.0, end=8.0)
    assert [round(float(np.asarray(f).mean()) / 2) for f in picked] == [52, 60]


def test_no_audio_stream_is_a_clear_error_or_silence_when_asked(videos):
    with pytest.raises(MediaDecodeError, match="has no audio stream, but its sound was asked for") as err:
        decode_video_audio(videos["silent"], RATE, what=f"video {videos['silent']}")
    assert err.value.kind == "no_audio" and "silent.mp4" in str(err.value) and "silence" in str(err.value)
    silence = decode_video_audio(videos["silent"], RATE, start=0.5, end=1.0, missing="silence")
    assert silence.shape == (RATE // 2,) and not silence.any()


def test_long_media_is_refused_from_metadata_before_decoding(videos, tmp_path):
    with pytest.raises(MediaDecodeError, match="spans 16 frames .* the limit is 8 frames per video") as err:
        decode_video(videos["sound"], 4, max_source_frames=8)
    assert err.value.kind == "too_long"
    assert len(decode_video(videos["sound"], 4, start=0.5, end=1.5, max_source_frames=8)) == 4  # the span fits
    with pytest.raises(MediaDecodeError, match="lasts 2.00 s; the audio tower hears at most 1.5 s"):
        decode_video_audio(videos["sound"], RATE, max_seconds=1.5)
    with pytest.raises(MediaDecodeError, match="empty or negative span"):
        decode_video(videos["sound"], 2, start=3.0)
    import soundfile as sf

    sf.write(tmp_path / "long.wav", np.zeros(3 * RATE, np.float32), RATE)
    with pytest.raises(DataError, match=r"long.wav lasts 3.00 s; the limit is 2 s per clip"):
        load_audio(str(tmp_path / "long.wav"), max_seconds=2)


# ------------------------------------------------------------------------------------------------ processor


def _runs(ids: torch.Tensor, processor) -> list[tuple[str, int]]:
    kinds = {processor.audio_token_id: "audio", processor.video_token_id: "video"}
    seq = [kinds[t] for t in ids.tolist() if t in kinds]
    return [(k, len(list(g))) for k, g in itertools.groupby(seq)]


def test_processor_places_the_sound_right_after_the_frames(processor, videos, tiny_model_and_processor):
    model = tiny_model_and_processor[0]
    plain = np.zeros(RATE // 2, np.float32)
    heard = {"path": str(videos["sound"]), "start": 1.0, "end": 2.0, "audio": True}
    messages = [
        {"role": "user", "content": [{"type": "audio", "audio": plain}, {"type": "video", "video": heard}]},
        {"role": "assistant", "content": [{"type": "text", "text": "blue high"}]},
    ]
    out = processor.apply_chat_template(
        [messages], tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_tensors="pt"
    )
    ids = out["input_ids"][0]
    # plain clip 0.5 s -> 7 tokens; 4 frames pooled by 2 -> 2 x 16 tokens; then the 1 s span's sound -> 13 tokens
    assert _runs(ids, processor) == [("audio", 7), ("video", 32), ("audio", 13)]
    assert out["feature_attention_mask"].sum(-1).tolist() == [50, 100]  # clips in placeholder order
    features = processor.feature_extractor(
        decode_video_audio(videos["sound"], RATE, start=1.0, end=2.0), sampling_rate=RATE, padding="max_length"
    )["input_features"][0]
    assert torch.allclose(out["input_features"][1], torch.as_tensor(features), atol=1e-5)
    # labels still cover exactly the answer although the video's replacement grew by its audio tokens
    assert processor.tokenizer.decode(ids[out["assistant_masks"][0].bool()]) == "blue high<|im_end|>"
    prompt = processor.apply_chat_template(
        [messages[:1]], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert model.generate(**prompt, max_new_tokens=2, do_sample=False).shape[1] == prompt["input_ids"].shape[1] + 2


def test_interleaved_layout_puts_each_chunk_of_sound_after_its_frames(processor, videos):
    """The measured alternative (`video_audio_layout="interleaved"`): one clip per group of `video_temporal_pool`
    frames, each after its group; the collator splits the features per sample by the same count."""
    clip = VideoClip(
        decode_video(videos["sound"], 4, start=1.0, end=2.0),
        decode_video_audio(videos["sound"], RATE, start=1.0, end=2.0),
        RATE,
    )
    sample = {
        "id": "v", "kind": "instruct", "images": [], "audios": [np.zeros(RATE // 2, np.float32)], "videos": [clip],
        "messages": [{"role": "user", "content": [{"type": "audio"}, {"type": "video"}]},
                     {"role": "assistant", "content": [{"type": "text", "text": "blue high"}]}],
    }  # fmt: skip
    other = {
        **sample,
        "id": "w",
        "audios": [],
        "messages": [{"role": "user", "content": [{"type": "video"}]}, sample["messages"][1]],
    }
    batch = OpenMindCollator(processor, processor_kwargs={"video_audio_layout": "interleaved"})([sample, other])
    # 4 frames pooled by 2 -> 2 groups of 16 tokens; the 1 s of sound cut in two 0.5 s chunks of 7 tokens
    assert _runs(batch["input_ids"][0], processor) == [
        ("audio", 7),
        ("video", 16),
        ("audio", 7),
        ("video", 16),
        ("audio", 7),
    ]
    assert _runs(batch["input_ids"][1], processor) == [("video", 16), ("audio", 7), ("video", 16), ("audio", 7)]
    assert batch["feature_attention_mask"].sum(-1).tolist() == [50, 50, 50, 50, 50]
    with pytest.raises(ValueError, match="video_audio_layout must be one of"):
        processor(text="<video>", videos=[clip], video_audio_layout="chunked")


def test_use_audio_in_video_hears_every_video_and_refuses_silent_ones(processor, videos):
    def render(video, **kwargs):
        messages = [[{"role": "user", "content": [{"type": "video", "video": video}]}]]
        return processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, processor_kwargs=kwargs
        )

    assert "input_features" not in render(str(videos["sound"]))
    heard = render(str(videos["sound"]), use_audio_in_video=True)
    assert _runs(torch.tensor(heard["input_ids"][0]), processor) == [("video", 32), ("audio", 25)]
    with pytest.raises(MediaDecodeError, match=r"silent.mp4 has no audio stream"):
        render(str(videos["silent"]), use_audio_in_video=True)
    quiet = render({"path": str(videos["silent"]), "audio": True, "missing_audio": "silence"})
    assert np.asarray(quiet["feature_attention_mask"]).sum() == 200


def test_the_pipeline_hears_a_video(tiny_model_and_processor, videos):
    """`pipeline("image-text-to-text")`: a video dict with `"audio": true`, and a path with
    `processor_kwargs={"use_audio_in_video": True}`, both reach the audio tower (hooked), with the frames."""
    from transformers import pipeline

    model, processor = tiny_model_and_processor
    pipe = pipeline("image-text-to-text", model=model, processor=processor)
    calls = {"audio": 0, "vision": 0}
    hooks = [
        model.model.audio_tower.register_forward_hook(lambda *_: calls.__setitem__("audio", calls["audio"] + 1)),
        model.model.vision_tower.register_forward_hook(lambda *_: calls.__setitem__("vision", calls["vision"] + 1)),
    ]
    try:
        for video, kwargs in [
            ({"path": str(videos["sound"]), "start": 1.0, "end": 2.0, "audio": True}, {}),
            (str(videos["sound"]), {"processor_kwargs": {"use_audio_in_video": True}}),
            (str(videos["sound"]), {}),
        ]:
            before = dict(calls)
            messages = [
                {"role": "user", "content": [{"type": "video", "video": video}, {"type": "text", "text": "?"}]}
            ]
            pipe(text=messages, max_new_tokens=1, return_full_text=False, **kwargs)
            heard = calls["audio"] > before["audio"]
            assert calls["vision"] > before["vision"] and heard == (video != str(videos["sound"]) or bool(kwargs))
    finally:
        for hook in hooks:
            hook.remove()


# ------------------------------------------------------------------------------------------------ data path


def test_records_with_a_span_and_sound_reach_the_batch(processor, videos, tmp_path):
    import json

    records = [
        {"id": "heard", "conversations": [{"from": "user", "value": "<video> what?"}, {"from": "gpt", "value": "x"}],
         "video": {"path": str(videos["sound"]), "start": 1.0, "end": 2.0, "audio": True}},
        {"id": "seen", "conversations": [{"from": "user", "value": "<video> what?"}, {"from": "gpt", "value": "y"}],
         "video": {"path": str(videos["sound"]), "start": 0.0, "end": 1.0}},
    ]  # fmt: skip
    (tmp_path / "v.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    dataset = OpenMindDataset(tmp_path / "v.jsonl")
    heard, seen = dataset[0], dataset[1]
    assert isinstance(heard["videos"][0], VideoClip) and isinstance(seen["videos"][0], list)
    assert _peak_hz(heard["videos"][0].audio[1000:-1000]) == pytest.approx(1760, abs=2)
    assert {_frame_index(f) for f in heard["videos"][0].frames} <= set(range(8, 16))  # the second half only
    assert {_frame_index(f) for f in seen["videos"][0]} <= set(range(0, 8))
    batch = OpenMindCollator(processor)([heard, seen])
    assert batch["input_features"].shape[0] == 1 and batch["video_num_frames"].tolist() == [4, 4]
    assert _runs(batch["input_ids"][0], processor) == [("video", 32), ("audio", 13)]
    assert _runs(batch["input_ids"][1], processor) == [("video", 32)]

    dataset.use_audio_in_video = True  # the recipes' --use_audio_in_video: now the second one is heard too
    assert isinstance(dataset[1]["videos"][0], VideoClip)
    record = {**records[0], "video": {"path": str(videos["silent"]), "audio": True}}
    with pytest.raises(DataError, match=r"silent.mp4 has no audio stream"):
        load_video_frames(record["video"])


# ------------------------------------------------------------------------------------------------ server


@pytest.fixture(scope="module")
def server(tiny_model_and_processor):
    from openmind_hf.serving import BackgroundServer, ServeSettings, create_app

    model, processor = tiny_model_and_processor
    settings = ServeSettings(model_name="tiny", api_key="k", max_tokens_cap=64, max_concurrent=2, generation_workers=1)
    with BackgroundServer(create_app(model, processor, settings)) as running:
        yield running


def _ask(server, part: dict) -> httpx.Response:
    body = {"model": "tiny", "max_tokens": 2, "temperature": 0,
            "messages": [{"role": "user", "content": [part, {"type": "text", "text": "what?"}]}]}  # fmt: skip
    return httpx.post(
        f"{server.url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"}, timeout=60
    )


def _video_part(path: Path, **options) -> dict:
    uri = "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode()
    return {"type": "video_url", "video_url": {"url": uri, **options}}


def test_server_accepts_a_video_url_with_sound(server, processor, videos):
    seen, heard = _ask(server, _video_part(videos["sound"])), _ask(server, _video_part(videos["sound"], audio=True))
    assert seen.status_code == heard.status_code == 200, (seen.text, heard.text)
    # 2 s of sound -> 200 mel frames -> 25 audio tokens on top of the same frames
    assert heard.json()["usage"]["prompt_tokens"] - seen.json()["usage"]["prompt_tokens"] == 25
    refused = _ask(server, _video_part(videos["silent"], audio=True))
    assert refused.status_code == 400 and "has no audio track" in refused.json()["error"]["message"]
    assert _ask(server, _video_part(videos["silent"], audio=True, missing_audio="silence")).status_code == 200


# ------------------------------------------------------------------------------------------------ learning


def _answers(model, processor, samples) -> list[tuple[str, str]]:
    from openmind_hf.training.demo import held_out_accuracy

    results = held_out_accuracy(model, processor, samples)["samples"]
    return [(r["output"].strip().lower(), r["expected"]) for r in results]


def _half_accuracy(pairs, half: int) -> float:
    return float(np.mean([out.split()[half : half + 1] == exp.split()[half : half + 1] for out, exp in pairs]))


@pytest.mark.slow  # 120 fixed SFT steps + 2 x 64 greedy answers: ~75 s idle, ~2-3 min on a busy 2-core box
def test_the_toy_task_needs_the_sound_and_is_learned_with_it(tmp_path):
    """SFT (tiny preset, recipe flag --use_audio_in_video) on 2 s videos whose span picks one half: the answer is the
    half's colour AND pitch. Held-out: both right >= 0.9. Ablations on the same model: with the sound replaced by
    silence the pitch falls to about chance (0.5) while the colour stays; with each video given ANOTHER video's
    sound, the pitch answered is the donor's (the sound, not the frames, decides it)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from training_data import build_recipe_trainer

    from openmind_hf.data.synthetic import write_video_sound_dataset
    from openmind_hf.training.recipe_loader import parse_stage_args

    torch.set_num_threads(1)
    data = write_video_sound_dataset(tmp_path / "data", seed=0, num_train=256, num_test=128)
    argv = [
        "--preset", "tiny", "--dataset_name", data["train"], "--output_dir", str(tmp_path / "out"),
        "--use_audio_in_video", "true", "--freeze_vision", "false", "--freeze_audio", "false",
        "--learning_rate", "2e-3", "--per_device_train_batch_size", "16", "--max_steps", "120",
        "--lr_scheduler_type", "cosine", "--warmup_steps", "10", "--cache_encoded_samples", "true", "--logging_steps", "40",
        "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true", "--seed", "0",
    ]  # fmt: skip
    trainer, processor, _ = build_recipe_trainer("sft", *parse_stage_args("sft", argv))
    trainer.train()

    test = OpenMindDataset(data["test"])
    test.use_audio_in_video = True
    samples = [test[i] for i in range(len(test))]

    def with_sound(sample, audio):
        video = sample["videos"][0]
        return {**sample, "videos": [VideoClip(video.frames, audio, video.sampling_rate)]}

    heard = _answers(trainer.model, processor, samples)
    muted = _answers(trainer.model, processor, [with_sound(s, np.zeros_like(s["videos"][0].audio)) for s in samples])
    donors = samples[1:] + samples[:1]
    swapped = _answers(
        trainer.model, processor, [with_sound(s, d["videos"][0].audio) for s, d in zip(samples, donors)]
    )
    both = float(np.mean([out == exp for out, exp in heard]))
    follows_donor = float(np.mean([o.split()[1:2] == [d["metadata"]["pitch"]] for (o, _), d in zip(swapped, donors)]))
    print(
        f"video+sound task: both {both:.3f}, colour {_half_accuracy(heard, 0):.3f}, pitch {_half_accuracy(heard, 1):.3f}"
        f" with sound; colour {_half_accuracy(muted, 0):.3f}, pitch {_half_accuracy(muted, 1):.3f} with silence;"
        f" pitch = the donor's {follows_donor:.3f} with another video's sound"
    )
    assert both >= 0.9, heard[:8]
    assert _half_accuracy(muted, 0) >= 0.9  # the frames still answer the colour
    assert _half_accuracy(muted, 1) <= 0.75, muted[:8]  # chance is 0.5: without the sound the pitch is a guess
    assert follows_donor >= 0.9, swapped[:8]


def test_the_server_refuses_a_video_over_the_pixel_limit_from_its_header(videos):
    """A client's video gets the image rule (`max_pixels` per frame), checked from the container before decoding."""
    from openmind_hf.serving.media import MediaError, MediaLimits
    from openmind_hf.serving.media import decode_video as serve_video

    data = videos["sound"].read_bytes()
    header = probe_video(data)
    assert (header.width, header.height) == (32, 32)
    assert len(serve_video(data, MediaLimits(max_pixels=32 * 32, max_audio_seconds=30), num_frames=2)) == 2
    with pytest.raises(MediaError, match=r"is 32x32 pixels; the limit is 1000 pixels per frame"):
        serve_video(data, MediaLimits(max_pixels=1000, max_audio_seconds=30), num_frames=2)


def test_an_already_decoded_heard_video_gets_the_same_length_limit(processor, videos):
    """Training data reach the processor decoded (a `VideoClip`): its sound is refused past the audio tower's window,
    as a video file's is, instead of being cut silently by the feature extractor."""
    window = processor.feature_extractor.chunk_length
    frames = decode_video(videos["sound"], 2)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "what?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    short = VideoClip(frames, np.zeros(RATE, np.float32), RATE)
    assert "input_features" in processor(text=[text], videos=[short], return_tensors="pt")
    long = VideoClip(frames, np.zeros(int(RATE * (window + 1)), np.float32), RATE)
    with pytest.raises(
        MediaDecodeError, match=rf"sound of video 0 lasts {window + 1:.2f} s; the limit is {window:g} s"
    ):
        processor(text=[text], videos=[long], return_tensors="pt")
