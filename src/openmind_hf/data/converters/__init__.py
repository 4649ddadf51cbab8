"""Converters from public datasets' own file formats to our two JSONL formats.

`DATASETS` maps a name to where the upstream files live and the function that converts them; `download_and_convert`
fetches (Hugging Face Hub or the publisher's URL), unpacks and converts. Conversion alone (`input_dir=...`) needs no
network. Media paths in the written JSONL are relative to the JSONL's folder, so the loaders find the pictures and
clips wherever they were unpacked. Web-scale image sets (LAION, CC12M) come as img2dataset WebDataset shards
instead: they are streamed (local or http(s) shards, never extracted) into our own shards, which the loaders read
as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import audio, coco, docqa, gsm8k, hendrycks_math, llava, video, visual_genome, vqa, webdataset_shards
from .common import FetchError, Remote, extract_archives, fetch


@dataclass(frozen=True)
class DatasetSpec:
    """A public dataset: its upstream files, its converter, and what the user must fetch by hand (media)."""

    name: str
    description: str
    remotes: tuple[Remote, ...]
    convert: Callable[..., dict]
    media_note: str = ""
    unpack: bool = True  # False for WebDataset shard sets: their .tar files are streamed, never extracted
    produces: str = "instruct JSONL"  # what `convert` writes, shown by `openmind data list`


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "coco-captions",
            "COCO 2017 captions (pretraining + captioning eval with all references)",
            coco.REMOTES,
            coco.convert,
            "pictures: http://images.cocodataset.org/zips/{train,val}2017.zip, unpacked next to annotations/",
            produces="pretrain + instruct JSONL (image)",
        ),
        DatasetSpec(
            "llava-pretrain",
            "LLaVA-Pretrain 558K BLIP captions of LAION/CC/SBU (stage 1 alignment)",
            llava.PRETRAIN_REMOTES,
            llava.convert_pretrain,
            "pictures: images.zip of liuhaotian/LLaVA-Pretrain, unpacked next to the JSON (or --media-dir)",
            produces="pretrain JSONL (image)",
        ),
        DatasetSpec(
            "llava-instruct",
            "LLaVA-1.5 665K instruction mix (stage 2)",
            llava.INSTRUCT_REMOTES,
            llava.convert_instruct,
            "pictures: coco/train2017, gqa/images, ocr_vqa/images, textvqa/train_images, vg/VG_100K(_2) under --media-dir",
            produces="instruct JSONL (image)",
        ),
        DatasetSpec("vqav2", "VQAv2 open-ended QA (10 reference answers each)", vqa.VQAV2_REMOTES, vqa.convert_vqav2,
                    "pictures: COCO train2014/val2014 next to the JSON (or --media-dir)", produces="instruct JSONL (image)"),
        DatasetSpec("textvqa", "TextVQA 0.5.1 (reading text in pictures)", vqa.TEXTVQA_REMOTES, vqa.convert_textvqa,
                    "pictures: train_val_images.zip from dl.fbaipublicfiles.com/textvqa/images/", produces="instruct JSONL (image)"),
        DatasetSpec("docvqa", "DocVQA (document QA; Hub Parquet has the validation split with pictures)",
                    docqa.DOCVQA_REMOTES, docqa.convert_docvqa, produces="instruct JSONL (image)"),
        DatasetSpec("chartqa", "ChartQA (chart QA; Hub Parquet with pictures)", docqa.CHARTQA_REMOTES, docqa.convert_chartqa, produces="instruct JSONL (image)"),
        DatasetSpec("gsm8k", "GSM8K grade-school math with worked solutions as reasoning traces", gsm8k.REMOTES, gsm8k.convert, produces="instruct JSONL (reasoning)"),
        DatasetSpec("librispeech", "LibriSpeech dev-clean (ASR)", audio.LIBRISPEECH_REMOTES, audio.convert_librispeech, produces="pretrain + instruct JSONL (audio)"),
        DatasetSpec("clotho", "Clotho v2.1 audio captioning (5 captions per clip)", audio.CLOTHO_REMOTES, audio.convert_clotho,
                    "clips: clotho_audio_{split}.7z from zenodo record 4783391, unpacked next to the CSVs", produces="pretrain + instruct JSONL (audio)"),
        DatasetSpec("webvid", "WebVid-2M stock clips + captions (video pretraining, span = whole clip)",
                    video.WEBVID_REMOTES, video.convert_webvid,
                    "clips: contentUrl of each CSV row, saved as {page_dir}/{videoid}.mp4 next to the CSV (or --media-dir)", produces="pretrain JSONL (video span)"),
        DatasetSpec("howto100m", "HowTo100M ASR caption segments (video pretraining, span = segment start/end)",
                    video.HOWTO100M_REMOTES, video.convert_howto100m,
                    "videos: YouTube ids from HowTo100M_v1.csv, saved as {video_id}.mp4 next to the JSON (or --media-dir)", produces="pretrain JSONL (video span)"),
        DatasetSpec("visual-genome", "Visual Genome 1.2 region descriptions (pretraining, region captioning) + QA",
                    visual_genome.REMOTES, visual_genome.convert,
                    "pictures: images.zip + images2.zip from visualgenome.org, unpacked as VG_100K/ and VG_100K_2/", produces="pretrain + instruct JSONL (image)"),
        DatasetSpec("laion", "LAION img2dataset WebDataset shards (streamed; similarity -> metadata.quality_score)",
                    (), webdataset_shards.convert_laion,
                    "shards: img2dataset --output_format webdataset --save_additional_columns '[\"similarity\"]', "
                    "then --input SHARD_FOLDER_OR_URLS", unpack=False, produces="pretrain WebDataset shards (image)"),
        DatasetSpec("cc12m", "Conceptual 12M img2dataset WebDataset shards (streamed)", (), webdataset_shards.convert_cc12m,
                    "shards: img2dataset --url_list cc12m.tsv --input_format tsv --output_format webdataset, "
                    "then --input SHARD_FOLDER_OR_URLS", unpack=False, produces="pretrain WebDataset shards (image)"),
        DatasetSpec("math", "MATH (Hendrycks) competition problems with worked solutions as reasoning traces",
                    hendrycks_math.REMOTES, hendrycks_math.convert, produces="instruct JSONL (reasoning)"),
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
    if not _is_url(input_dir):  # shard sets also take http(s) shard URLs, which Path() would mangle
        input_dir = Path(input_dir)
    elif spec.unpack:
        raise ValueError(f"{name!r} converts local files only; download {input_dir} and give its folder as --input")
    if spec.unpack:
        extract_archives(input_dir)
    return spec.convert(input_dir, output_dir, limit=limit, media_dir=Path(media_dir) if media_dir else None)


def _is_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(("http://", "https://"))


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
