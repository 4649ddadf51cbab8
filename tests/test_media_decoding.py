"""One media decoder: the data path, the processor and the server give the same features for the same media, and
processing/ stands alone (it imports nothing else of the package: a `trust_remote_code` checkpoint carries it)."""

from __future__ import annotations

import ast
import base64
import io
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from openmind_hf.data.dataset import OpenMindDataset
from openmind_hf.data.errors import DataError
from openmind_hf.data.media import load_audio
from openmind_hf.processing.collator import OpenMindCollator
from openmind_hf.processing.errors import MediaDecodeError, ProcessingError
from openmind_hf.processing.media_decoding import audio_to_mono
from openmind_hf.serving.conversation import PromptBuilder, PromptLimits
from openmind_hf.serving.media import MediaLimits
from openmind_hf.serving.schemas import ChatCompletionRequest

PROCESSING = Path(__file__).resolve().parents[1] / "src" / "openmind_hf" / "processing"
OTHER_PACKAGES = ("data", "training", "serving", "evaluation", "export", "building", "cli", "presets", "recipes")
_MODULE_NAME = re.compile(rf"^openmind_hf\.({'|'.join(OTHER_PACKAGES)})(\.\w+)*$")


@pytest.fixture(scope="module")
def processor(tiny_model_and_processor):
    return tiny_model_and_processor[1]


def _stereo(rate: int, seconds: float = 1.0) -> np.ndarray:
    """[2, samples]: a 440 Hz tone left, a quieter 1 kHz tone right (so a wrong downmix or layout shows)."""
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 1000 * t)]).astype(np.float32)


def _file_bytes(array: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, array.T, rate, format=fmt, subtype=subtype)  # soundfile writes [frames, channels]
    return buffer.getvalue()


def _data_path(tmp_path: Path, name: str, payload: bytes, kind: str, processor) -> dict:
    """The training path: a JSONL record naming the file -> OpenMindDataset -> the collator's batch."""
    (tmp_path / name).write_bytes(payload)
    record = {
        "id": name,
        "conversations": [{"from": "user", "value": f"<{kind}> what?"}, {"from": "gpt", "value": "x"}],
    }
    record[kind] = name
    (tmp_path / f"{name}.jsonl").write_text(json.dumps(record) + "\n")
    return OpenMindCollator(processor)([OpenMindDataset(tmp_path / f"{name}.jsonl")[0]])


def _server_path(processor, part: dict) -> dict:
    """The server: a chat request with base64 media -> PromptBuilder -> model inputs."""
    limits = PromptLimits(max_images=2, max_audios=2, media=MediaLimits(max_pixels=10**6, max_audio_seconds=30))
    request = ChatCompletionRequest(
        model="tiny", messages=[{"role": "user", "content": [part, {"type": "text", "text": "what?"}]}]
    )
    return PromptBuilder(processor, limits).build(request, enable_thinking=False).inputs


@pytest.mark.parametrize(
    "rate,fmt,subtype,server_format",
    [(44_100, "WAV", "FLOAT", "wav"), (22_050, "FLAC", None, "flac"), (22_050, "OGG", "VORBIS", None)],
    ids=["wav-44.1k-float", "flac-22.05k", "ogg-22.05k"],
)
def test_stereo_odd_rate_audio_gives_identical_features_on_every_path(processor, tmp_path, rate, fmt, subtype,
                                                                      server_format):  # fmt: skip
    payload = _file_bytes(_stereo(rate), rate, fmt, subtype)
    decoded, file_rate = sf.read(io.BytesIO(payload), dtype="float32", always_2d=True)
    as_array = decoded.T  # what the file holds, in the convention: [channels, samples]
    reference = processor(text=["<audio>"], audio=[as_array], sampling_rate=file_rate, return_tensors="pt")
    assert reference["input_features"].shape[0] == 1 and int(reference["feature_attention_mask"].sum()) == 100

    paths = {"data": _data_path(tmp_path, f"clip.{fmt.lower()}", payload, "audio", processor)}
    paths["data, HF decoded dict"] = processor(
        text=["<audio>"], audio=[load_audio({"array": as_array, "sampling_rate": file_rate})], return_tensors="pt"
    )
    if server_format is not None:  # the server takes wav/mp3/flac only
        part = {
            "type": "input_audio",
            "input_audio": {"data": base64.b64encode(payload).decode(), "format": server_format},
        }
        paths["server"] = _server_path(processor, part)
    for name, out in paths.items():
        assert torch.equal(out["input_features"], reference["input_features"]), name
        assert torch.equal(out["feature_attention_mask"], reference["feature_attention_mask"]), name


def test_formats_libsndfile_cannot_read_go_through_pyav_in_the_same_layout(processor, tmp_path):
    import av

    from openmind_hf.processing.media_decoding import read_audio

    rate, stereo = 22_050, _stereo(22_050)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:  # AAC in m4a: libsndfile cannot read it
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(stereo, format="fltp", layout="stereo")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    waveform, file_rate = read_audio(buffer.getvalue())
    assert waveform.shape[0] == 2 and file_rate == rate  # [channels, samples], the file's own rate
    reference = processor(text=["<audio>"], audio=[waveform], sampling_rate=file_rate, return_tensors="pt")
    data = _data_path(tmp_path, "clip.m4a", buffer.getvalue(), "audio", processor)
    assert torch.equal(data["input_features"], reference["input_features"])


def test_a_float_stereo_array_equals_its_wav_file(processor):
    # FLOAT wav stores the array exactly, so the array itself (not a read-back) must give the file's features.
    stereo = _stereo(44_100)
    from_array = processor(text=["<audio>"], audio=[stereo], sampling_rate=44_100, return_tensors="pt")
    from_file = processor(text=["<audio>"], audio=[_file_bytes(stereo, 44_100, "WAV", "FLOAT")], return_tensors="pt")
    assert torch.equal(from_array["input_features"], from_file["input_features"])
    mono = processor(text=["<audio>"], audio=[stereo.mean(axis=0)], sampling_rate=44_100, return_tensors="pt")
    assert torch.equal(from_array["input_features"], mono["input_features"])  # downmix = mean of the channels


def test_samples_by_channels_arrays_are_refused_with_the_fix(processor):
    wrong = _stereo(16_000).T  # [samples, channels], soundfile's layout
    with pytest.raises(MediaDecodeError, match=r"\(16000, 2\).*\[channels, samples\].*array\.T"):
        audio_to_mono(wrong)
    with pytest.raises(ValueError, match=r"audio clip 0 has shape \(16000, 2\).*array\.T"):
        processor(text=["<audio>"], audio=[wrong])
    with pytest.raises(DataError, match="array.T"):
        load_audio(wrong)
    with pytest.raises(MediaDecodeError, match="audio arrays are"):
        audio_to_mono(np.zeros((2, 3, 4)))


def _exif_rotated_jpeg() -> bytes:
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def _png(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def _palette_with_transparency() -> bytes:
    palette = Image.new("P", (24, 24), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(0, (0, 0, 12, 24))  # left half transparent (-> white), right half blue
    return _png(palette, transparency=0)


@pytest.mark.parametrize(
    "name,payload,mime",
    [
        ("exif.jpg", _exif_rotated_jpeg(), "image/jpeg"),
        ("rgba.png", _png(Image.new("RGBA", (24, 16), (255, 0, 0, 0))), "image/png"),
        ("palette.png", _palette_with_transparency(), "image/png"),
    ],
)
def test_images_give_identical_pixels_on_every_path(processor, tmp_path, name, payload, mime):
    reference = processor(text=["<image>"], images=[Image.open(io.BytesIO(payload))], return_tensors="pt")
    data = _data_path(tmp_path, name, payload, "image", processor)
    url = f"data:{mime};base64,{base64.b64encode(payload).decode()}"
    server = _server_path(processor, {"type": "image_url", "image_url": {"url": url}})
    for path, out in (("data", data), ("server", server)):
        assert torch.equal(out["pixel_values"], reference["pixel_values"]), path
    # and the conversion did happen: transparent pixels are white, the EXIF photo is upright (red on top)
    from openmind_hf.processing.media_decoding import decode_image

    rgb = np.asarray(decode_image(payload))
    if name == "exif.jpg":
        assert rgb.shape[:2] == (40, 20) and rgb[5, 10, 0] > 200 and rgb[35, 10, 0] < 60
    else:
        assert tuple(rgb[0, 0]) == (255, 255, 255)


def test_processing_error_is_the_base_of_data_error():
    error = DataError("bad", source="train.jsonl", line=3, sample_id="s1", hint="fix it")
    assert isinstance(error, ProcessingError) and isinstance(error, ValueError)
    assert str(error) == "train.jsonl:3 (sample 's1'): bad. fix it"
    assert type(error.located(source="x")) is DataError
    media = MediaDecodeError("audio x is empty", kind="empty").located(sample_id="s2")
    assert media.kind == "empty" and str(media) == "<record> (sample 's2'): audio x is empty"


# ------------------------------------------------------------------------------------ processing stands alone


def _forbidden(module: str | None, level: int) -> bool:
    if level >= 2:  # `from ..data import x` leaves processing/
        return True
    return level == 0 and module is not None and module.split(".")[0] == "openmind_hf"


def test_processing_has_no_import_of_the_rest_of_the_package_anywhere():
    offenders = []
    for path in sorted(PROCESSING.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and _forbidden(node.module, node.level):
                offenders.append(f"{path.name}:{node.lineno} from {'.' * node.level}{node.module or ''}")
            elif isinstance(node, ast.Import):
                offenders += [
                    f"{path.name}:{node.lineno} import {a.name}" for a in node.names if _forbidden(a.name, 0)
                ]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                # importlib.import_module("openmind_hf.data...") would dodge the checks above
                if _MODULE_NAME.match(node.value):
                    offenders.append(f"{path.name}:{node.lineno} names module {node.value!r}")
    assert not offenders, "processing/ must import only itself and third-party libraries:\n" + "\n".join(offenders)


def _run(code: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=cwd, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_processing_imports_alone_and_loads_no_other_part_of_the_package(tmp_path):
    # One fresh interpreter (imports cost ~15 s on a shared core): first the files alone under another package name,
    # as a trust_remote_code checkpoint loads them, then the installed package's processing modules.
    shutil.copytree(PROCESSING, tmp_path / "remote_processing", ignore=shutil.ignore_patterns("__pycache__"))
    modules = sorted(p.stem for p in PROCESSING.glob("*.py") if p.stem != "__init__")
    out = _run(
        f"""
        import importlib, json, sys
        ours = lambda: sorted(m for m in sys.modules if m == "openmind_hf" or m.startswith("openmind_hf."))
        for name in {modules!r}:
            importlib.import_module("remote_processing." + name)
        standalone = ours()
        import openmind_hf  # the package itself registers the Auto classes (modeling, processing, building)
        before = set(sys.modules)
        for name in {modules!r}:
            module = importlib.import_module("openmind_hf.processing." + name)
            for attr in getattr(module, "__all__", []):
                getattr(module, attr)
        print(json.dumps({{"standalone": standalone, "new": sorted(set(ours()) - before), "all": ours()}}))
        """,
        cwd=tmp_path,
    )
    report = json.loads(out.strip().splitlines()[-1])
    assert report["standalone"] == [], report["standalone"]
    assert all(m.startswith("openmind_hf.processing.") for m in report["new"]), report["new"]
    banned = ("data", "training", "serving", "evaluation", "export", "cli", "recipes")
    assert not [m for m in report["all"] if m.count(".") and m.split(".")[1] in banned], report["all"]
