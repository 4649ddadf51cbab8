"""Audio sets -> pretraining (`{"text", "audio"}`) and instruction JSONL.

- LibriSpeech (ASR): `LibriSpeech/{subset}/{speaker}/{chapter}/{speaker}-{chapter}.trans.txt`, one
  `"{utterance_id} {TRANSCRIPT}"` per line, next to `{utterance_id}.flac`.
- Clotho (audio captioning): `clotho_captions_{development,validation,evaluation}.csv` with columns `file_name`,
  `caption_1` ... `caption_5`; the clips are `{split}/{file_name}` (from `clotho_audio_{split}.7z`).
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import DataError
from .common import Remote, media_path, write_jsonl

LIBRISPEECH_REMOTES = (Remote("dev-clean.tar.gz", url="https://www.openslr.org/resources/12/dev-clean.tar.gz"),)
CLOTHO_REMOTES = tuple(
    Remote(f"clotho_captions_{split}.csv", url=f"https://zenodo.org/records/4783391/files/clotho_captions_{split}.csv")
    for split in ("development", "validation", "evaluation")
)
TRANSCRIBE = "Transcribe the audio."
DESCRIBE = "Describe the sound in one sentence."


def _instruct(sample_id: str, prompt: str, answer: str, audio: str, metadata: dict) -> dict:
    return {
        "id": sample_id,
        "conversations": [{"from": "user", "value": f"<audio>\n{prompt}"}, {"from": "assistant", "value": answer}],
        "audio": audio,
        "metadata": metadata,
    }


def convert_librispeech(
    input_dir: Path, output_dir: Path, limit: int | None = None, media_dir: Path | None = None
) -> dict:
    transcripts = sorted(Path(input_dir).rglob("*.trans.txt"))
    if not transcripts:
        raise DataError(
            f"no LibriSpeech *.trans.txt under {input_dir}", source=str(input_dir), hint="extract the archive first"
        )
    utterances = []
    for path in transcripts:
        subset = path.parents[2].name  # {subset}/{speaker}/{chapter}/x.trans.txt
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                utt, text = line.split(" ", 1)
                audio = media_path(path.parent, f"{utt}.flac", output_dir)
                utterances.append(
                    (
                        utt,
                        text.strip(),
                        audio,
                        {"source": "librispeech", "subset": subset, "speaker": utt.split("-")[0]},
                    )
                )
    pretrain = ({"id": f"librispeech-{u}", "text": t, "audio": a, "metadata": m} for u, t, a, m in utterances)
    instruct = (
        _instruct(f"librispeech-{u}", TRANSCRIBE, t, a, {**m, "task": "asr", "answer": t}) for u, t, a, m in utterances
    )
    return {
        "pretrain_train": write_jsonl(output_dir / "pretrain_train.jsonl", pretrain, limit),
        "instruct_train": write_jsonl(output_dir / "instruct_train.jsonl", instruct, limit),
    }


def convert_clotho(input_dir: Path, output_dir: Path, limit: int | None = None, media_dir: Path | None = None) -> dict:
    counts = {}
    for split in ("development", "validation", "evaluation"):
        files = sorted(Path(input_dir).rglob(f"clotho_captions_{split}.csv"))
        if not files:
            continue
        with open(files[0], encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        root = media_dir or files[0].parent
        ours = "train" if split == "development" else ("val" if split == "validation" else "test")
        pretrain, instruct = [], []
        for row in rows:
            captions = [row[f"caption_{i}"].strip() for i in range(1, 6) if row.get(f"caption_{i}")]
            audio = media_path(root, f"{split}/{row['file_name']}", output_dir)
            stem = Path(row["file_name"]).stem
            meta = {"source": "clotho", "split": ours}
            pretrain += [
                {"id": f"clotho-{stem}-{i}", "text": c, "audio": audio, "metadata": meta}
                for i, c in enumerate(captions)
            ]
            instruct.append(
                _instruct(
                    f"clotho-{stem}",
                    DESCRIBE,
                    captions[0],
                    audio,
                    {**meta, "task": "audio_caption", "references": captions},
                )
            )
        counts[f"pretrain_{ours}"] = write_jsonl(output_dir / f"pretrain_{ours}.jsonl", pretrain, limit)
        counts[f"instruct_{ours}"] = write_jsonl(output_dir / f"instruct_{ours}.jsonl", instruct, limit)
    if not counts:
        raise DataError(
            f"no clotho_captions_*.csv under {input_dir}", source=str(input_dir), hint="download the caption CSVs"
        )
    return counts
