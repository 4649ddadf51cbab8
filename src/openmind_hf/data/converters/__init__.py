"""Converters from public datasets' own file formats to our two JSONL formats.

`DATASETS` maps a name to where the upstream files live and the function that converts them; `download_and_convert`
fetches (Hugging Face Hub or the publisher's URL), unpacks and converts. Conversion alone (`input_dir=...`) needs no
network. Media paths in the written JSONL are relative to the JSONL's folder, so the loaders find the pictures and
clips wherever they were unpacked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import audio, coco, docqa, gsm8k, llava, vqa
from .common import FetchError, Remote, extract_archives, fetch


@dataclass(frozen=True)
class DatasetSpec:
    """A public dataset: its upstream files, its converter, and what the user must fetch by hand (media)."""

    name: str
    description: str
    remotes: tuple[Remote, ...]
    convert: Callable[..., dict]
    media_note: str = ""


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "coco-captions",
            "COCO 2017 captions (pretraining + captioning eval with all references)",
            coco.REMOTES,
            coco.convert,
            "pictures: http://images.cocodataset.org/zips/{train,val}2017.zip, unpacked next to annotations/",
        ),
        DatasetSpec(
            "llava-pretrain",
            "LLaVA-Pretrain 558K BLIP captions of LAION/CC/SBU (stage 1 alignment)",
            llava.PRETRAIN_REMOTES,
            llava.convert_pretrain,
            "pictures: images.zip of liuhaotian/LLaVA-Pretrain, unpacked next to the JSON (or --media-dir)",
        ),
        DatasetSpec(
            "llava-instruct",
            "LLaVA-1.5 665K instruction mix (stage 2)",
            llava.INSTRUCT_REMOTES,
            llava.convert_instruct,
            "pictures: coco/train2017, gqa/images, ocr_vqa/images, textvqa/train_images, vg/VG_100K(_2) under --media-dir",
        ),
        DatasetSpec("vqav2", "VQAv2 open-ended QA (10 reference answers each)", vqa.VQAV2_REMOTES, vqa.convert_vqav2,
                    "pictures: COCO train2014/val2014 next to the JSON (or --media-dir)"),
        DatasetSpec("textvqa", "TextVQA 0.5.1 (reading text in pictures)", vqa.TEXTVQA_REMOTES, vqa.convert_textvqa,
                    "pictures: train_val_images.zip from dl.fbaipublicfiles.com/textvqa/images/"),
        DatasetSpec("docvqa", "DocVQA (document QA; Hub Parquet has the validation split with pictures)",
                    docqa.DOCVQA_REMOTES, docqa.convert_docvqa),
        DatasetSpec("chartqa", "ChartQA (chart QA; Hub Parquet with pictures)", docqa.CHARTQA_REMOTES, docqa.convert_chartqa),
        DatasetSpec("gsm8k", "GSM8K grade-school math with worked solutions as reasoning traces", gsm8k.REMOTES, gsm8k.convert),
        DatasetSpec("librispeech", "LibriSpeech dev-clean (ASR)", audio.LIBRISPEECH_REMOTES, audio.convert_librispeech),
        DatasetSpec("clotho", "Clotho v2.1 audio captioning (5 captions per clip)", audio.CLOTHO_REMOTES, audio.convert_clotho,
                    "clips: clotho_audio_{split}.7z from zenodo record 4783391, unpacked next to the CSVs"),
    )
}  # fmt: skip


def convert_dataset(
    name: str,
    input_dir: str | Path,
    output_dir: str | Path,
    limit: int | None = None,
    media_dir: str | Path | None = None,
) -> dict:
    """Convert upstream files already on disk (no network). Returns counts of written records per file."""
    spec = _spec(name)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    extract_archives(Path(input_dir))
    return spec.convert(Path(input_dir), output_dir, limit=limit, media_dir=Path(media_dir) if media_dir else None)


def download_and_convert(
    name: str, output_dir: str | Path, limit: int | None = None, media_dir: str | Path | None = None
) -> dict:
    """Fetch `name`'s upstream files into `output_dir/raw/`, then convert them into `output_dir`.

    Raises:
        `FetchError`: naming every file that could not be reached and how to convert by hand instead.
    """
    spec = _spec(name)
    raw = fetch(name, list(spec.remotes), Path(output_dir) / "raw")
    return convert_dataset(name, raw, output_dir, limit=limit, media_dir=media_dir)


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {sorted(DATASETS)}")
    return DATASETS[name]


__all__ = ["DATASETS", "DatasetSpec", "FetchError", "convert_dataset", "download_and_convert"]
