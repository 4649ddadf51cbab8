"""`openmind data ...`: write synthetic demo data, download/convert public datasets, check a dataset.

openmind data synthetic --output data/demo --seed 0 --num-train 512 --num-test 128
openmind data download --dataset gsm8k --output data/gsm8k            # fetch + convert
openmind data download --dataset coco-captions --input raw/coco --output data/coco   # convert only, offline
openmind data download --dataset laion --input 'https://host/laion/{00000..00099}.tar' --output data/laion  # streamed
openmind data list
openmind data check data/demo/instruct_train.jsonl --on-error skip   # decode everything, report bad records
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synthetic = sub.add_parser("synthetic", help="write the synthetic demo dataset (images, audio, reasoning)")
    synthetic.add_argument("--output", required=True, help="folder to write into")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--num-train", type=int, default=512)
    synthetic.add_argument("--num-test", type=int, default=128)

    download = sub.add_parser("download", help="download a public dataset and convert it to our JSONL formats")
    add_download_arguments(download)

    sub.add_parser("list", help="list the public datasets `download` knows")

    check = sub.add_parser("check", help="read a dataset, decode its media, and report bad records")
    check.add_argument("source", help="JSONL/JSON/Parquet/tar file or folder, or a `datasets` name")
    check.add_argument("--media-root", default=None, help="folder relative media paths start from")
    check.add_argument("--on-error", choices=("raise", "skip"), default="skip")
    check.add_argument("--min-quality-score", type=float, default=None)
    check.add_argument("--split", default="train")


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    from .converters import DATASETS

    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--output", required=True, help="folder for the JSONL files (raw downloads go to OUTPUT/raw)")
    parser.add_argument(
        "--input",
        default=None,
        help="convert upstream files already in this folder (no network); for laion/cc12m also shard URLs",
    )
    parser.add_argument("--media-dir", default=None, help="folder holding the upstream pictures/clips, if elsewhere")
    parser.add_argument("--limit", type=int, default=None, help="write at most this many records per file")


def run_download(args) -> int:
    from .converters import DATASETS, FetchError, convert_dataset, download_and_convert
    from .errors import DataError

    try:
        if args.input is not None:
            counts = convert_dataset(args.dataset, args.input, args.output, limit=args.limit, media_dir=args.media_dir)
        else:
            counts = download_and_convert(args.dataset, args.output, limit=args.limit, media_dir=args.media_dir)
    except (FetchError, DataError) as err:
        print(f"openmind data download: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"dataset": args.dataset, "output": args.output, "written": counts}, indent=2))
    note = DATASETS[args.dataset].media_note
    if note:
        print(f"media are not downloaded by this command; {note}", file=sys.stderr)
    return 0


def _run_check(args) -> int:
    from .errors import DataError
    from .loading import RecordFilter, iter_samples
    from .policy import SkipReport

    report = SkipReport()
    record_filter = RecordFilter(min_quality_score=args.min_quality_score)
    kinds: dict[str, int] = {}
    try:
        for sample in iter_samples(
            args.source,
            media_root=args.media_root,
            record_filter=record_filter,
            on_error=args.on_error,
            report=report,
            decode=True,
            split=args.split,
        ):
            kinds[sample["kind"]] = kinds.get(sample["kind"], 0) + 1
    except DataError as err:
        print(f"openmind data check: {err}", file=sys.stderr)
        return 1
    summary = {
        "usable": sum(kinds.values()),
        "kinds": kinds,
        "filtered": record_filter.filtered,
        "skipped": report.to_dict(20),
    }
    print(json.dumps(summary, indent=2))
    print(report.summary(), file=sys.stderr)
    return 0 if report.count == 0 else 3


def run(args) -> int:
    if args.data_command == "synthetic":
        from .synthetic import write_synthetic_dataset

        manifest = write_synthetic_dataset(
            args.output, seed=args.seed, num_train=args.num_train, num_test=args.num_test
        )
        print(json.dumps({"output": args.output, "splits": manifest["splits"], "files": manifest["files"]}, indent=2))
        return 0
    if args.data_command == "download":
        return run_download(args)
    if args.data_command == "list":
        from .converters import DATASETS

        for spec in DATASETS.values():
            print(f"{spec.name:16s} {spec.produces:36s} {spec.description}")
        return 0
    return _run_check(args)


__all__ = ["add_arguments", "add_download_arguments", "run", "run_download"]
