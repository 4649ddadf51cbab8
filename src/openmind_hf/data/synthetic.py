"""Synthetic demo data that a tiny model can really learn.

`write_synthetic_dataset(output_dir, seed=0)` writes, deterministically for a seed:

- `images/*.png`: 64x64 pictures of 1-4 shapes of one colour, grouped on one side of the picture;
- `audio/*.wav`: 1.5 s, 16 kHz clips of 1-4 tones of one pitch;
- `pretrain_{train,test}.jsonl`: pretraining records `{"text": caption, "image"|"audio": path, "metadata"}`;
- `instruct_{train,test}.jsonl`: instruction records `{"conversations": [...], "image"|"audio": path, "metadata"}`
  with one question whose answer is ONE word or number from a closed set of four (chance = 0.25);
- `preference_{train,test}.jsonl`: `{"prompt", "chosen", "rejected", "images"|"audios", "answer", "task"}` pairs in
  TRL's conversational format (media paths relative to the dataset folder), for DPO and reward models;
- `manifest.json`: seed, counts, the tasks, and the vocabulary.

Every record carries `metadata.task` (`image`, `audio` or `reasoning`) and `metadata.answer` so per-task accuracy
can be computed. Reasoning questions need one arithmetic step over a count; their assistant turn carries a worked
trace in `reasoning_content`. Every word the generator can emit is in `SYNTHETIC_VOCABULARY`, so a tiny tokenizer
trained on it covers the whole dataset.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Closed sets. Each question draws its answer uniformly from a set of four, so chance accuracy is 0.25.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (50, 80, 220),
    "yellow": (230, 200, 30),
}
SHAPES: dict[str, str] = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}
POSITIONS: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}
PITCHES: dict[str, float] = {"deep": 220.0, "low": 440.0, "high": 880.0, "shrill": 1760.0}  # Hz, one octave apart
COUNTS = (1, 2, 3, 4)
TASKS = ("image", "audio", "reasoning")

IMAGE_SIZE = 64
SAMPLING_RATE = 16_000
CLIP_SECONDS = 1.5
TONE_SECONDS = 0.15
GAP_SECONDS = 0.12

# Every word (and punctuation mark) that captions, questions, answers and reasoning traces can contain.
SYNTHETIC_VOCABULARY: tuple[str, ...] = (
    # digits: counts 1-4 and arithmetic results 0-6
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
    # colours, shapes, positions, pitches
    "red", "green", "blue", "yellow",
    "circle", "circles", "square", "squares", "triangle", "triangles", "cross", "crosses",
    "left", "right", "top", "bottom",
    "deep", "low", "high", "shrill",
    # captions, questions and traces
    "a", "added", "answer", "are", "at", "away", "color", "count", "hear", "how", "i", "I", "if", "is", "it",
    "many", "minus", "more", "of", "on", "pitch", "played", "plus", "shape", "shapes", "shown", "so", "taken",
    "the", "The", "there", "tone", "tones", "What", "what", "Where", "where", "Which", "which", "How", "If", "So",
    "see", "picture", "clip", "in",
    "?", ".", ",",
)  # fmt: skip

_WORD = re.compile(r"\w+|[^\w\s]")


def vocabulary_words(text: str) -> list[str]:
    """Split `text` the way `SYNTHETIC_VOCABULARY` counts words: runs of word characters and single marks."""
    return _WORD.findall(text)


@dataclass(frozen=True)
class _Question:
    task: str
    question: str
    answer: str
    options: tuple[str, ...]  # the closed set the answer comes from (used for rejected answers)
    reasoning: str | None = None


def _plural(count: int, singular: str, plural: str) -> str:
    return singular if count == 1 else plural


# ----------------------------------------------------------------------------------------------- images


def _draw_shape(draw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    else:  # cross: two bars a third of the size wide
        w = r / 3
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)


def render_shapes_image(count: int, color: str, shape: str, position: str, rng: np.random.Generator):
    """Draw `count` shapes of one `color` in the `position` half of a 64x64 RGB picture.

    The half is cut into four slots along its long side; `count` of them, chosen by `rng`, hold a shape.
    """
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    half, slot = IMAGE_SIZE / 2, IMAGE_SIZE / 4
    slots = np.sort(rng.choice(4, size=count, replace=False))
    for s in slots:
        along = slot * s + slot / 2 + rng.uniform(-1, 1)
        across = half / 2 + rng.uniform(-3, 3)
        offset = {"left": 0.0, "top": 0.0, "right": half, "bottom": half}[position]
        cx, cy = (offset + across, along) if position in ("left", "right") else (along, offset + across)
        _draw_shape(draw, shape, cx, cy, r=5.5, fill=COLORS[color])
    return image


def _image_questions(count: int, color: str, shape: str, position: str) -> list[_Question]:
    one = count == 1
    digits = tuple(str(c) for c in COUNTS)
    return [
        _Question("image", f"What color {'is the shape' if one else 'are the shapes'}?", color, tuple(COLORS)),
        _Question("image", "Which shape is shown?", shape, tuple(SHAPES)),
        _Question("image", "How many shapes are there?", str(count), digits),
        _Question("image", f"Where {'is the shape' if one else 'are the shapes'}?", position, tuple(POSITIONS)),
    ]


def _image_reasoning(count: int, rng: np.random.Generator) -> _Question:
    shapes = _plural(count, "shape", "shapes")
    if rng.random() < 0.5:
        added = int(rng.integers(1, 3))
        total = count + added
        return _Question(
            "reasoning",
            f"If {added} more {_plural(added, 'is', 'are')} added, how many shapes are there?",
            str(total),
            tuple(str(c + added) for c in COUNTS),
            f"I count {count} {shapes} in the picture. {count} plus {added} is {total}. So the answer is {total}.",
        )
    left = count - 1
    return _Question(
        "reasoning",
        "If 1 is taken away, how many shapes are left?",
        str(left),
        tuple(str(c - 1) for c in COUNTS),
        f"I count {count} {shapes} in the picture. {count} minus 1 is {left}. So the answer is {left}.",
    )


# ------------------------------------------------------------------------------------------------ audio


def render_tones(count: int, pitch: str, rng: np.random.Generator) -> np.ndarray:
    """`count` sine tones of one `pitch`, each 0.15 s with 10 ms fades, in a 1.5 s mono float32 clip at 16 kHz."""
    clip = np.zeros(int(CLIP_SECONDS * SAMPLING_RATE), dtype=np.float32)
    n_tone = int(TONE_SECONDS * SAMPLING_RATE)
    t = np.arange(n_tone) / SAMPLING_RATE
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # avoids clicks that would smear the spectrum
    tone = (0.5 * np.sin(2 * np.pi * PITCHES[pitch] * t) * fade).astype(np.float32)
    start = int(rng.uniform(0.05, 0.2) * SAMPLING_RATE)
    for i in range(count):
        begin = start + i * int((TONE_SECONDS + GAP_SECONDS) * SAMPLING_RATE)
        clip[begin : begin + n_tone] += tone
    clip += rng.normal(0.0, 0.005, size=clip.shape).astype(np.float32)  # a little noise, so no clip is silent
    return clip


def _audio_questions(count: int, pitch: str) -> list[_Question]:
    one = count == 1
    return [
        _Question("audio", "How many tones are there?", str(count), tuple(str(c) for c in COUNTS)),
        _Question("audio", f"What pitch {'is the tone' if one else 'are the tones'}?", pitch, tuple(PITCHES)),
    ]


def _audio_reasoning(count: int, rng: np.random.Generator) -> _Question:
    added = int(rng.integers(1, 3))
    total = count + added
    return _Question(
        "reasoning",
        f"If {added} more {_plural(added, 'is', 'are')} played, how many tones are there?",
        str(total),
        tuple(str(c + added) for c in COUNTS),
        f"I hear {count} {_plural(count, 'tone', 'tones')} in the clip. {count} plus {added} is {total}. "
        f"So the answer is {total}.",
    )


# ------------------------------------------------------------------------------------------------ video


def write_video(
    path: str | Path,
    frames: list[np.ndarray],
    fps: int = 4,
    audio: np.ndarray | None = None,
    sampling_rate: int = SAMPLING_RATE,
    keyframe_interval: int = 4,
) -> None:
    """Writes an MP4 with PyAV: MPEG-4 part 2 video of `frames` (`[H, W, 3]` uint8, even sides) and, when `audio`
    (mono float32 `[samples]`) is given, an AAC audio track.

    Args:
        keyframe_interval (`int`, *optional*, defaults to 4): frames per group of pictures (seeking lands on these).
    """
    import av

    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        video.gop_size = keyframe_interval
        video.bit_rate = 400_000
        sound = container.add_stream("aac", rate=sampling_rate, layout="mono") if audio is not None else None
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(video.encode())
        if sound is not None:
            samples = np.asarray(audio, dtype=np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = sampling_rate
            container.mux(sound.encode(frame))
            container.mux(sound.encode())


# A video that must be SEEN and HEARD: each 2 s clip has two halves; in each half a square of one colour moves left
# to right while a tone of one pitch plays. A record's span picks one half; the question asks for the colour AND the
# pitch in it, so the answer ("red high") needs the frames of the span and its sound (the other half is a decoy).
VIDEO_SIZE = 32
VIDEO_FPS = 8
VIDEO_HALF_SECONDS = 1.0
VIDEO_PITCHES: dict[str, float] = {"low": 440.0, "high": 1760.0}
VIDEO_QUESTION = "What color is the shape, what pitch is the tone?"  # every word in SYNTHETIC_VOCABULARY


def _moving_square(color: str, t: float) -> np.ndarray:
    """One 32x32 frame: a 10 px square of `color` at horizontal position `t` (0..1) on white."""
    frame = np.full((VIDEO_SIZE, VIDEO_SIZE, 3), 255, np.uint8)
    x = int(round(t * (VIDEO_SIZE - 10)))
    frame[11:21, x : x + 10] = COLORS[color]
    return frame


def _half_tone(pitch: str, rng: np.random.Generator) -> np.ndarray:
    """A 1 s half: the tone from 0.1 s to 0.9 s (gaps keep the AAC encoder's delay from leaking across halves)."""
    n = int(VIDEO_HALF_SECONDS * SAMPLING_RATE)
    t = np.arange(n) / SAMPLING_RATE
    on = (t >= 0.1) & (t < 0.9)
    fade = np.clip(np.minimum(t - 0.1, 0.9 - t) / 0.01, 0.0, 1.0)
    tone = 0.5 * np.sin(2 * np.pi * VIDEO_PITCHES[pitch] * t) * fade * on
    return (tone + rng.normal(0.0, 0.005, n)).astype(np.float32)


def write_video_sound_dataset(output_dir: str | Path, seed: int = 0, num_train: int = 256, num_test: int = 64) -> dict:
    """Writes the seen-and-heard video task: `videos/*.mp4` (2 s, 32x32, 8 fps, AAC mono 16 kHz) and
    `video_sound_{train,test}.jsonl` instruction records whose `video` is `{"path", "start", "end"}` (one half).

    Records do not say `"audio"`: hearing is the caller's choice (`--use_audio_in_video`, or the loaders'
    `use_audio_in_video`), so the same files serve the ablation. `metadata` holds `answer`, `color` and `pitch`.

    Returns:
        `dict`: `{"train": path, "test": path, "colors": [...], "pitches": [...]}`.
    """
    root = Path(output_dir)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    paths = {}
    for split, num, rng in (("train", num_train, train_rng), ("test", num_test, test_rng)):
        lines = []
        for i in range(num):
            sample_id = f"video-{split}-{i:05d}"
            colors = [str(c) for c in rng.choice(list(COLORS), size=2, replace=False)]
            pitches = [str(p) for p in rng.choice(list(VIDEO_PITCHES), size=2)]
            per_half = int(VIDEO_FPS * VIDEO_HALF_SECONDS)
            frames = [_moving_square(c, k / (per_half - 1)) for c in colors for k in range(per_half)]
            sound = np.concatenate([_half_tone(p, rng) for p in pitches])
            rel = f"videos/{sample_id}.mp4"
            write_video(root / rel, frames, fps=VIDEO_FPS, audio=sound)
            half = int(rng.integers(2))
            answer = f"{colors[half]} {pitches[half]}"
            span = {"path": rel, "start": half * VIDEO_HALF_SECONDS, "end": (half + 1) * VIDEO_HALF_SECONDS}
            record = {
                "id": sample_id,
                "conversations": [
                    {"from": "user", "value": f"<video>\n{VIDEO_QUESTION}"},
                    {"from": "assistant", "value": answer},
                ],
                "video": span,
                "metadata": {"task": "video_sound", "answer": answer, "color": colors[half], "pitch": pitches[half]},
            }
            lines.append(json.dumps(record) + "\n")
        paths[split] = root / f"video_sound_{split}.jsonl"
        paths[split].write_text("".join(lines), encoding="utf-8")
    return {**{k: str(v) for k, v in paths.items()}, "colors": list(COLORS), "pitches": list(VIDEO_PITCHES)}


# ---------------------------------------------------------------------------------------------- writing


def _write_split(root: Path, split: str, num: int, rng: np.random.Generator) -> dict[str, int]:
    import soundfile as sf

    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    files = {
        kind: open(root / f"{kind}_{split}.jsonl", "w", encoding="utf-8")
        for kind in ("pretrain", "instruct", "preference")
    }
    tasks = dict.fromkeys(TASKS, 0)
    try:
        for i in range(num):
            sample_id = f"{split}-{i:05d}"
            task = TASKS[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
            modality = task if task != "reasoning" else ("image" if rng.random() < 0.6 else "audio")
            count = int(rng.choice(COUNTS))
            if modality == "image":
                color, shape, position = (str(rng.choice(list(d))) for d in (COLORS, SHAPES, POSITIONS))
                rel = f"images/{sample_id}.png"
                render_shapes_image(count, color, shape, position, rng).save(root / rel)
                caption = f"{count} {color} {_plural(count, shape, SHAPES[shape])} {POSITIONS[position]}"
                options = _image_questions(count, color, shape, position)
                placeholder = "<image>"
            else:
                pitch = str(rng.choice(list(PITCHES)))
                rel = f"audio/{sample_id}.wav"
                sf.write(root / rel, render_tones(count, pitch, rng), SAMPLING_RATE, subtype="PCM_16")
                caption = f"{count} {pitch} {_plural(count, 'tone', 'tones')}"
                options = _audio_questions(count, pitch)
                placeholder = "<audio>"
            if task == "reasoning":
                q = _image_reasoning(count, rng) if modality == "image" else _audio_reasoning(count, rng)
            else:
                q = options[int(rng.integers(len(options)))]
            tasks[task] += 1
            meta = {"source": "synthetic", "task": q.task, "modality": modality, "answer": q.answer, "split": split}
            pretrain_meta = {"source": "synthetic", "task": modality, "modality": modality, "split": split}
            media = {modality if modality == "image" else "audio": rel}
            files["pretrain"].write(
                json.dumps({"id": sample_id, "text": caption, **media, "metadata": pretrain_meta}) + "\n"
            )
            answer_turn = {"from": "assistant", "value": q.answer}
            if q.reasoning is not None:
                answer_turn["reasoning_content"] = q.reasoning
            conversation = [{"from": "user", "value": f"{placeholder}\n{q.question}"}, answer_turn]
            files["instruct"].write(
                json.dumps({"id": sample_id, "conversations": conversation, **media, "metadata": meta}) + "\n"
            )
            wrong = [o for o in q.options if o != q.answer]
            rejected = wrong[int(rng.integers(len(wrong)))]
            prompt = [{"role": "user", "content": [{"type": modality}, {"type": "text", "text": q.question}]}]
            pair = {
                "id": sample_id,
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": [{"type": "text", "text": q.answer}]}],
                "rejected": [{"role": "assistant", "content": [{"type": "text", "text": rejected}]}],
                ("images" if modality == "image" else "audios"): [rel],
                "answer": q.answer,
                "task": q.task,
            }
            files["preference"].write(json.dumps(pair) + "\n")
    finally:
        for f in files.values():
            f.close()
    return tasks


def write_synthetic_dataset(output_dir: str | Path, seed: int = 0, num_train: int = 512, num_test: int = 128) -> dict:
    """Write the synthetic demo dataset to `output_dir` and return its manifest.

    Args:
        output_dir (`str` or `Path`): folder to write into (created; files of an earlier run are overwritten).
        seed (`int`, *optional*, defaults to 0): the same seed writes byte-identical files.
        num_train (`int`, *optional*, defaults to 512): samples in the train split (one media file each).
        num_test (`int`, *optional*, defaults to 128): samples in the test split.

    Returns:
        `dict`: the manifest also written to `manifest.json` (seed, counts per split and task, vocabulary).
    """
    if num_train < 0 or num_test < 0:
        raise ValueError(f"num_train and num_test must be >= 0, got {num_train} and {num_test}.")
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    # Independent streams per split: changing --num-train does not change the test split.
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    manifest = {
        "seed": seed,
        "splits": {
            "train": {"num_samples": num_train, "tasks": _write_split(root, "train", num_train, train_rng)},
            "test": {"num_samples": num_test, "tasks": _write_split(root, "test", num_test, test_rng)},
        },
        "files": {
            kind: {s: f"{kind}_{s}.jsonl" for s in ("train", "test")}
            for kind in ("pretrain", "instruct", "preference")
        },
        "tasks": list(TASKS),
        "answer_sets": {
            "color": list(COLORS),
            "shape": list(SHAPES),
            "position": list(POSITIONS),
            "pitch": list(PITCHES),
            "count": [str(c) for c in COUNTS],
        },
        "image_size": IMAGE_SIZE,
        "sampling_rate": SAMPLING_RATE,
        "vocabulary": list(SYNTHETIC_VOCABULARY),
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


# ------------------------------------------------------------------------------------- fault injection

FAULT_KINDS = (
    "truncated_jpeg",
    "corrupt_png",
    "zero_byte_image",
    "missing_image",
    "unreadable_audio",
    "unreadable_video",
    "empty_conversation",
    "unknown_role",
    "more_placeholders_than_media",
    "more_media_than_placeholders",
    "invalid_json",
)
# Odd but valid images that must be converted, not skipped.
CONVERTIBLE_KINDS = ("cmyk_jpeg", "gray16_png", "palette_png", "exif_rotated_jpeg")


def _write_fault_media(root: Path, rng: np.random.Generator) -> dict[str, str]:
    """Write the broken and the odd-but-valid media files under `root/faults/`; return kind -> relative path."""
    import io

    from PIL import Image

    folder = root / "faults"
    folder.mkdir(parents=True, exist_ok=True)
    noise = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    jpeg = io.BytesIO()
    noise.save(jpeg, format="JPEG", quality=95)
    png = io.BytesIO()
    noise.save(png, format="PNG")
    files = {
        "truncated_jpeg.jpg": jpeg.getvalue()[: len(jpeg.getvalue()) // 2],
        "corrupt_png.png": png.getvalue()[:8] + bytes(rng.integers(0, 255, 200, dtype=np.uint8)),
        "zero_byte_image.png": b"",
        "unreadable_audio.wav": b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(32),
        "unreadable_video.mp4": b"\x00\x00\x00\x18ftypmp42" + bytes(rng.integers(0, 255, 200, dtype=np.uint8)),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    shape = render_shapes_image(2, "red", "circle", "left", rng)
    shape.convert("CMYK").save(folder / "cmyk_jpeg.jpg")
    Image.fromarray(np.asarray(shape.convert("L"), dtype=np.uint16) * 257).save(folder / "gray16_png.png")
    shape.convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(folder / "palette_png.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    shape.save(folder / "exif_rotated_jpeg.jpg", exif=exif.tobytes())
    paths = {name.split(".")[0]: f"faults/{name}" for name in files}
    paths.update({kind: f"faults/{kind}.{'jpg' if 'jpeg' in kind else 'png'}" for kind in CONVERTIBLE_KINDS})
    paths["missing_image"] = "faults/does_not_exist.png"
    return paths


def _fault_line(kind: str, paths: dict[str, str], sample_id: str) -> str:
    question = {"from": "user", "value": "<image>\nHow many shapes are there?"}
    answer = {"from": "assistant", "value": "2"}
    record: dict = {"id": sample_id, "conversations": [question, answer], "metadata": {"fault": kind}}
    if kind in ("truncated_jpeg", "corrupt_png", "zero_byte_image", "missing_image") or kind in CONVERTIBLE_KINDS:
        record["image"] = paths[kind]
    elif kind == "unreadable_audio":
        record["audio"] = paths[kind]
        record["conversations"] = [{"from": "user", "value": "<audio>\nHow many tones are there?"}, answer]
    elif kind == "unreadable_video":
        record["video"] = paths[kind]
        record["conversations"] = [{"from": "user", "value": "<video>\nHow many shapes are there?"}, answer]
    elif kind == "empty_conversation":
        record.update(conversations=[], image=paths["cmyk_jpeg"])
    elif kind == "unknown_role":
        record.update(conversations=[{"from": "narrator", "value": "<image>"}, answer], image=paths["cmyk_jpeg"])
    elif kind == "more_placeholders_than_media":
        record.update(
            conversations=[{"from": "user", "value": "<image><image>\nHow many?"}, answer], image=paths["cmyk_jpeg"]
        )
    elif kind == "more_media_than_placeholders":
        record["images"] = [paths["cmyk_jpeg"], paths["palette_png"]]
    elif kind == "invalid_json":
        return '{"id": "' + sample_id + '", "conversations": [{"from": "user", "value": "<image>"'  # cut short
    return json.dumps(record)


def write_faulty_dataset(
    output_dir: str | Path, num_good: int = 24, seed: int = 0, fault_kinds: tuple[str, ...] = FAULT_KINDS
) -> dict:
    """Write `instruct_faulty.jsonl`: synthetic instruction records mixed with one bad record per fault kind.

    The bad records cover every case the bad-data policy promises to handle (truncated/corrupt/0-byte/missing
    images, unreadable audio and video, empty conversations, unknown roles, placeholder/media mismatches, invalid
    JSON); four more records hold CMYK / 16-bit / palette / EXIF-rotated images that must be converted, not skipped.

    Returns:
        `dict`: `path`, `num_bad`, `bad_ids`, `num_good` (including the convertible ones) and `good_ids`.
    """
    root = Path(output_dir)
    write_synthetic_dataset(root, seed=seed, num_train=num_good, num_test=0)
    rng = np.random.default_rng(seed + 1)
    paths = _write_fault_media(root, rng)
    lines = (root / "instruct_train.jsonl").read_text(encoding="utf-8").splitlines()
    good_ids = [json.loads(line)["id"] for line in lines]
    extra = [(f"convertible-{kind}", _fault_line(kind, paths, f"convertible-{kind}")) for kind in CONVERTIBLE_KINDS]
    bad = [(f"fault-{kind}", _fault_line(kind, paths, f"fault-{kind}")) for kind in fault_kinds]
    # Spread the odd and the bad records evenly through the good ones.
    inserts = extra + bad
    slots = np.linspace(1, len(lines), num=len(inserts)).astype(int) if inserts else []
    mixed, pending = [], list(zip(slots, inserts))
    for i, line in enumerate(lines, start=1):
        mixed.append(line)
        while pending and pending[0][0] <= i:
            mixed.append(pending.pop(0)[1][1])
    mixed += [item[1] for _, item in pending]
    path = root / "instruct_faulty.jsonl"
    path.write_text("\n".join(mixed) + "\n", encoding="utf-8")
    # A line of invalid JSON has no readable id: it is reported as "file:line", like any record without an id.
    line_of = {line: number for number, line in enumerate(mixed, start=1)}
    bad = [(f"{path}:{line_of[line]}" if i == "fault-invalid_json" else i, line) for i, line in bad]
    return {
        "path": str(path),
        "num_bad": len(bad),
        "bad_ids": [i for i, _ in bad],
        "num_good": len(good_ids) + len(extra),
        "good_ids": good_ids + [i for i, _ in extra],
    }


__all__ = [
    "COLORS",
    "CONVERTIBLE_KINDS",
    "FAULT_KINDS",
    "PITCHES",
    "POSITIONS",
    "SHAPES",
    "SYNTHETIC_VOCABULARY",
    "TASKS",
    "VIDEO_PITCHES",
    "VIDEO_QUESTION",
    "render_shapes_image",
    "render_tones",
    "vocabulary_words",
    "write_faulty_dataset",
    "write_video",
    "write_video_sound_dataset",
    "write_synthetic_dataset",
]
