"""Each converter on a small fixture written in that upstream's own file format; fetching against a local server."""

from __future__ import annotations

import functools
import http.server
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from openmind_hf.data.converters import DATASETS, FetchError, convert_dataset
from openmind_hf.data.converters.common import Remote, fetch
from openmind_hf.data.loading import iter_samples


def _png(path: Path, color=(10, 20, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _all_load(out: Path, name: str) -> list[dict]:
    """Every converted record must load and decode through our own loader (media paths resolve)."""
    return list(iter_samples(out / name, decode=True))


def test_coco_captions(tmp_path):
    raw = tmp_path / "raw"
    _png(raw / "val2017" / "000000000139.jpg")
    annotations = {
        "info": {"year": 2017},
        "licenses": [],
        "images": [{"license": 2, "file_name": "000000000139.jpg", "height": 8, "width": 8, "id": 139}],
        "annotations": [
            {"image_id": 139, "id": 1, "caption": "A woman stands in the dining area at the table. "},
            {"image_id": 139, "id": 2, "caption": "A room with chairs, a table, and a woman in it."},
        ],
    }
    (raw / "annotations").mkdir()
    (raw / "annotations" / "captions_val2017.json").write_text(json.dumps(annotations))
    out = tmp_path / "out"
    assert convert_dataset("coco-captions", raw, out) == {"pretrain_val": 2, "instruct_val": 1}
    pretrain = _all_load(out, "pretrain_val.jsonl")
    assert pretrain[0]["messages"][1]["content"][0]["text"] == "A woman stands in the dining area at the table."
    instruct = _read(out / "instruct_val.jsonl")[0]
    assert len(instruct["metadata"]["references"]) == 2
    assert _all_load(out, "instruct_val.jsonl")[0]["images"][0].size == (8, 8)


def test_llava_pretrain_and_instruct(tmp_path):
    raw = tmp_path / "raw"
    _png(raw / "00453" / "004539375.jpg")
    pretrain = [
        {
            "id": "004539375",
            "image": "00453/004539375.jpg",
            "conversations": [
                {"from": "human", "value": "Render a clear and concise summary of the photo.\n<image>"},
                {"from": "gpt", "value": "select luxury furniture 3 - inch gel memory foam mattress topper"},
            ],
        }
    ]
    raw.mkdir(exist_ok=True)
    (raw / "blip_laion_cc_sbu_558k.json").write_text(json.dumps(pretrain))
    out = tmp_path / "pre"
    assert convert_dataset("llava-pretrain", raw, out) == {"pretrain_train": 1}
    sample = _all_load(out, "pretrain_train.jsonl")[0]
    assert sample["kind"] == "pretrain" and sample["messages"][1]["content"][0]["text"].startswith("select luxury")

    media = tmp_path / "media"
    _png(media / "coco" / "train2017" / "000000033471.jpg")
    instruct = [
        {
            "id": "000000033471",
            "image": "coco/train2017/000000033471.jpg",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat are the colors of the bus in the image?"},
                {"from": "gpt", "value": "The bus in the image is white and red."},
                {"from": "human", "value": "What feature can be seen on the back of the bus?"},
                {"from": "gpt", "value": "The back of the bus features an advertisement."},
            ],
        },
        {
            "id": "i6IyJda_0",
            "model": "",
            "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}],
        },
        {
            "id": "broken",
            "image": "coco/x.jpg",
            "conversations": [{"from": "human", "value": "no placeholder"}, {"from": "gpt", "value": "x"}],
        },
    ]
    (raw / "llava_v1_5_mix665k.json").write_text(json.dumps(instruct))
    out = tmp_path / "sft"
    counts = convert_dataset("llava-instruct", raw, out, media_dir=media)
    assert counts["instruct_train"] == 2 and counts["invalid"] == 1
    assert "0 <image> placeholder(s) but 1 image(s)" in counts["invalid_examples"][0]
    samples = _all_load(out, "instruct_train.jsonl")
    assert [m["role"] for m in samples[0]["messages"]] == ["user", "assistant", "user", "assistant"]
    assert samples[1]["images"] == [] and samples[1]["kind"] == "instruct"


def test_vqav2_and_textvqa(tmp_path):
    raw = tmp_path / "vqa"
    _png(raw / "val2014" / "COCO_val2014_000000262148.jpg")
    questions = {
        "info": {},
        "task_type": "Open-Ended",
        "data_type": "mscoco",
        "license": {},
        "data_subtype": "val2014",
        "questions": [{"image_id": 262148, "question": "Where is he looking?", "question_id": 262148000}],
    }
    answers = [
        {"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
        for i, a in enumerate(["down"] * 7 + ["at table"] * 3)
    ]
    annotations = {
        "info": {},
        "license": {},
        "data_subtype": "val2014",
        "annotations": [
            {
                "question_type": "none of the above",
                "multiple_choice_answer": "down",
                "answers": answers,
                "image_id": 262148,
                "answer_type": "other",
                "question_id": 262148000,
            }
        ],
    }
    (raw / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps(questions))
    (raw / "v2_mscoco_val2014_annotations.json").write_text(json.dumps(annotations))
    out = tmp_path / "vqa_out"
    assert convert_dataset("vqav2", raw, out) == {"instruct_val": 1}
    sample = _all_load(out, "instruct_val.jsonl")[0]
    assert sample["messages"][1]["content"][0]["text"] == "down"
    assert sample["metadata"]["answers"].count("at table") == 3

    raw = tmp_path / "textvqa"
    _png(raw / "train_images" / "0054c91397f2fe05.jpg")
    data = {
        "dataset_type": "val",
        "dataset_name": "textvqa",
        "dataset_version": "0.5.1",
        "data": [
            {
                "question": "what is the brand of phone?",
                "image_id": "0054c91397f2fe05",
                "image_classes": ["Belt"],
                "flickr_original_url": "",
                "flickr_300k_url": "",
                "image_width": 8,
                "image_height": 8,
                "answers": ["nokia"] * 6 + ["toshiba"] * 4,
                "question_tokens": ["what", "is"],
                "question_id": 34602,
                "set_name": "val",
            }
        ],
    }
    (raw / "TextVQA_0.5.1_val.json").write_text(json.dumps(data))
    assert convert_dataset("textvqa", raw, tmp_path / "tv") == {"instruct_val": 1}
    assert _all_load(tmp_path / "tv", "instruct_val.jsonl")[0]["messages"][1]["content"][0]["text"] == "nokia"


def test_docvqa_and_chartqa_official_json_and_hub_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = tmp_path / "docvqa"
    _png(raw / "documents" / "xnbl0037_1.png")
    data = {
        "dataset_name": "docvqa",
        "dataset_split": "val",
        "dataset_version": "1.0",
        "data": [
            {
                "questionId": 49153,
                "question": "What is the ‘actual’ value per 1000, during the year 1975?",
                "question_types": ["figure/diagram"],
                "image": "documents/pybv0228_81.png".replace("pybv0228_81", "xnbl0037_1"),
                "docId": 14465,
                "ucsf_document_id": "pybv0228",
                "ucsf_document_page_no": "81",
                "answers": ["0.28"],
                "data_split": "val",
            }
        ],
    }
    (raw / "val_v1.0.json").write_text(json.dumps(data))
    assert convert_dataset("docvqa", raw, tmp_path / "d1") == {"instruct_val": 1}
    assert _all_load(tmp_path / "d1", "instruct_val.jsonl")[0]["messages"][1]["content"][0]["text"] == "0.28"

    png = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(png, format="PNG")
    parquet = tmp_path / "docvqa_hub" / "DocVQA"
    parquet.mkdir(parents=True)
    table = pa.Table.from_pylist(
        [
            {
                "questionId": "57344",
                "question": "What is the date?",
                "question_types": ["other"],
                "image": {"bytes": png.getvalue(), "path": None},
                "docId": 1,
                "ucsf_document_id": "a",
                "ucsf_document_page_no": "1",
                "answers": ["1/8/93"],
                "data_split": "val",
            }
        ]
    )
    pq.write_table(table, parquet / "validation-00000-of-00001.parquet")
    assert convert_dataset("docvqa", tmp_path / "docvqa_hub", tmp_path / "d2") == {"instruct_val": 1}
    assert _all_load(tmp_path / "d2", "instruct_val.jsonl")[0]["images"][0].getpixel((0, 0)) == (1, 2, 3)

    raw = tmp_path / "ChartQA Dataset"
    _png(raw / "val" / "png" / "41699051005347.png")
    (raw / "val" / "val_human.json").write_text(
        json.dumps([{"imgname": "41699051005347.png", "query": "How many food items are shown?", "label": "14"}])
    )
    (raw / "val" / "val_augmented.json").write_text(
        json.dumps([{"imgname": "41699051005347.png", "query": "What is the max?", "label": "53"}])
    )
    assert convert_dataset("chartqa", raw, tmp_path / "c1") == {"instruct_val": 2}
    assert [s["metadata"]["subset"] for s in _all_load(tmp_path / "c1", "instruct_val.jsonl")] == [
        "human",
        "augmented",
    ]

    hub = tmp_path / "chartqa_hub" / "data"
    hub.mkdir(parents=True)
    rows = [
        {
            "image": {"bytes": png.getvalue(), "path": "x.png"},
            "query": "Is the value of Favorable 38?",
            "label": ["No"],
            "human_or_machine": 0,
        }
    ]
    pq.write_table(pa.Table.from_pylist(rows), hub / "test-00000-of-00001.parquet")
    assert convert_dataset("chartqa", tmp_path / "chartqa_hub", tmp_path / "c2") == {"instruct_test": 1}
    assert _all_load(tmp_path / "c2", "instruct_test.jsonl")[0]["messages"][1]["content"][0]["text"] == "No"


GSM8K_ROW = {
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether "
    "in April and May.\n#### 72",
}


def test_gsm8k_jsonl_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "jsonl").mkdir()
    (tmp_path / "jsonl" / "test.jsonl").write_text(json.dumps(GSM8K_ROW) + "\n")
    assert convert_dataset("gsm8k", tmp_path / "jsonl", tmp_path / "o1") == {"instruct_test": 1}
    sample = _all_load(tmp_path / "o1", "instruct_test.jsonl")[0]
    assistant = sample["messages"][1]
    assert assistant["content"][0]["text"] == "72"
    assert assistant["reasoning_content"].startswith("Natalia sold 48/2 = 24 clips in May.")
    assert "<<" not in assistant["reasoning_content"]
    (tmp_path / "pq" / "main").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([GSM8K_ROW]), tmp_path / "pq" / "main" / "train-00000-of-00001.parquet")
    assert convert_dataset("gsm8k", tmp_path / "pq", tmp_path / "o2") == {"instruct_train": 1}


def test_librispeech_and_clotho(tmp_path):
    chapter = tmp_path / "LibriSpeech" / "dev-clean" / "1272" / "128104"
    chapter.mkdir(parents=True)
    sf.write(chapter / "1272-128104-0000.flac", np.zeros(8000, np.float32), 16000)
    (chapter / "1272-128104.trans.txt").write_text(
        "1272-128104-0000 MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES\n"
    )
    counts = convert_dataset("librispeech", tmp_path / "LibriSpeech", tmp_path / "ls")
    assert counts == {"pretrain_train": 1, "instruct_train": 1}
    sample = _all_load(tmp_path / "ls", "instruct_train.jsonl")[0]
    assert sample["audios"][0].shape == (8000,) and sample["metadata"]["speaker"] == "1272"
    assert sample["messages"][1]["content"][0]["text"] == "MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES"

    clotho = tmp_path / "clotho"
    (clotho / "evaluation").mkdir(parents=True)
    sf.write(clotho / "evaluation" / "Santa Motor.wav", np.zeros(4410, np.float32), 44100)
    header = "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"
    row = "Santa Motor.wav,A machine whines and squeals.,A person is using electric clippers.,Power tool whirs.,A motor runs.,An engine hums.\n"
    (clotho / "clotho_captions_evaluation.csv").write_text(header + row)
    counts = convert_dataset("clotho", clotho, tmp_path / "cl")
    assert counts == {"pretrain_test": 5, "instruct_test": 1}
    sample = _all_load(tmp_path / "cl", "instruct_test.jsonl")[0]
    assert sample["audios"][0].shape == (1600,) and len(sample["metadata"]["references"]) == 5


def test_every_registered_dataset_has_a_test_fixture():
    assert set(DATASETS) == {
        "coco-captions", "llava-pretrain", "llava-instruct", "vqav2", "textvqa", "docvqa", "chartqa", "gsm8k",
        "librispeech", "clotho",
        # fixtures in test_data_converters_video.py and test_data_converters_webdataset.py
        "webvid", "howto100m", "visual-genome", "math", "laion", "cc12m",
    }  # fmt: skip


@pytest.fixture()
def local_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving `tmp_path/www`."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_downloads_from_a_server_and_names_what_it_could_not_reach(local_server, tmp_path):
    root, base = local_server
    (root / "test.jsonl").write_text(json.dumps(GSM8K_ROW) + "\n")
    raw = tmp_path / "raw"
    fetch("gsm8k", [Remote("test.jsonl", url=f"{base}/test.jsonl")], raw)
    assert convert_dataset("gsm8k", raw, tmp_path / "out") == {"instruct_test": 1}
    missing = Remote("train.jsonl", url=f"{base}/nope/train.jsonl")
    hub = Remote("main/train-00000-of-00001.parquet", repo_id="openai/gsm8k")  # HF_HUB_OFFLINE=1 in tests
    with pytest.raises(FetchError) as info:
        fetch("gsm8k", [missing, hub], tmp_path / "raw2")
    message = str(info.value)
    assert f"could not reach {base}/nope/train.jsonl: HTTPError: HTTP Error 404" in message
    assert "could not reach the Hugging Face Hub dataset 'openai/gsm8k'" in message
    assert "--input FOLDER" in message
    assert not (tmp_path / "raw2" / "train.jsonl").exists() and not list((tmp_path / "raw2").glob("*.part"))


def test_cli_download_offline_fails_clearly_and_converts_from_input(tmp_path, capsys):
    from openmind_hf.cli import main

    assert main(["data", "download", "--dataset", "gsm8k", "--output", str(tmp_path / "o")]) == 1
    assert "could not reach the Hugging Face Hub" in capsys.readouterr().err
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "train.jsonl").write_text(json.dumps(GSM8K_ROW) + "\n")
    args = ["data", "download", "--dataset", "gsm8k", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o")]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["written"] == {"instruct_train": 1}
