"""`openmind data ...`: write synthetic demo data, download/convert public datasets, check a dataset.

openmind data synthetic --output data/demo --seed 0 --num-train 512 --num-test 128
openmind data download --dataset gsm8k --output data/gsm8k            # fetch + convert
openmind data download --dataset coco-captions --input raw/coco --output data/coco   # convert only, offline
openmind data download --dataset laion --input 'https://host/laion/{00000..00099}.tar' --output data/laion  # streamed
openmind data list
openmind data check data/demo/instruct_train.jsonl --on-error skip   # decode everything, report bad records
openmind data check data/demo/instruct_train.jsonl --stats --preset tiny   # token lengths, media, a preview
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
    check.add_argument(
        "--confine-media-to-root",
        action="store_true",
        help="a media path whose real path (symlinks resolved) is outside the media root is a bad record",
    )
    check.add_argument(
        "--stats",
        action="store_true",
        help="token-length histogram, media counts and a preview of samples as the model sees them "
        "(needs --model DIR or --preset tiny)",
    )
    check.add_argument("--model", default=None, help="--stats: checkpoint folder whose processor encodes samples")
    check.add_argument("--preset", choices=("tiny", "small"), default=None, help="--stats: use a preset's processor")
    check.add_argument("--max-length", type=int, default=None, help="--stats: count samples over this many tokens")
    check.add_argument("--stats-samples", type=int, default=2000, help="--stats: tokenize at most this many")
    check.add_argument("--preview", type=int, default=3, help="--stats: samples to show as the model sees them")


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


def _stats_processor(args):
    if args.model is not None:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(args.model)
    from ..building.presets import load_tiny_tokenizer, small_config, tiny_config
    from ..building.processor import build_processor

    tokenizer = load_tiny_tokenizer()
    config = (small_config if args.preset == "small" else tiny_config)(tokenizer)
    return build_processor(config, tokenizer)


def _run_check(args) -> int:
    from .errors import DataError
    from .loading import RecordFilter, iter_samples
    from .policy import SkipReport
    from .validate import RecordChecks

    if args.stats and args.model is None and args.preset is None:
        print("openmind data check: --stats needs --model DIR or --preset tiny (to tokenize)", file=sys.stderr)
        return 2
    stats = None
    if args.stats:
        from .stats import DatasetStats

        stats = DatasetStats(_stats_processor(args), args.stats_samples, args.preview, args.max_length)
    report = SkipReport()
    record_filter = RecordFilter(min_quality_score=args.min_quality_score)
    checks = RecordChecks(confine_media_to_root=args.confine_media_to_root)
    if _holds_pairs(args.source, args.split):
        if stats is not None:
            print(
                "openmind data check: --stats reads pretraining and chat records, not preference pairs",
                file=sys.stderr,
            )
            return 2
        return _check_pairs(args, record_filter, report, checks)
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
            checks=checks,
        ):
            kinds[sample["kind"]] = kinds.get(sample["kind"], 0) + 1
            if stats is not None:
                stats.add(sample)
    except DataError as err:
        print(f"openmind data check: {err}", file=sys.stderr)
        return 1
    summary = {
        "usable": sum(kinds.values()),
        "kinds": kinds,
        "filtered": record_filter.filtered,
        "skipped": report.to_dict(20),
    }
    if stats is not None:
        summary["stats"] = stats.to_dict()
    print(json.dumps(summary, indent=2))
    if stats is not None:
        _print_stats(summary["stats"])
    print(report.summary(), file=sys.stderr)
    return 0 if report.count == 0 else 3


def _holds_pairs(source, split: str) -> bool:
    """True when the first readable record is a preference pair (`chosen` + `rejected`: DPO / reward data)."""
    from .loading import iter_records

    try:
        for ref in iter_records(source, split=split):
            if isinstance(ref.record, dict):
                return "chosen" in ref.record and "rejected" in ref.record
    except Exception:  # unreadable sources are reported by the full check that follows
        return False
    return False


def _check_pairs(args, record_filter, report, checks) -> int:
    """`data check` for preference pairs: every pair normalised, its media checked and decoded."""
    from .errors import DataError
    from .preference import PreferenceDataset

    try:
        pairs = PreferenceDataset(
            args.source,
            media_root=args.media_root,
            on_error=args.on_error,
            report=report,
            record_filter=record_filter,
            split=args.split,
            checks=checks,
        )
        for index in range(len(pairs)):
            pairs[index]  # decodes the pair's media; a bad one is counted (skip) or raised
        usable = len(pairs) - len(pairs._bad)
    except DataError as err:
        print(f"openmind data check: {err}", file=sys.stderr)
        return 1
    summary = {"usable": usable, "kinds": {"preference": usable}, "filtered": record_filter.filtered}
    print(json.dumps({**summary, "skipped": report.to_dict(20)}, indent=2))
    print(report.summary(), file=sys.stderr)
    return 0 if report.count == 0 else 3


def _print_stats(stats: dict) -> None:
    from .stats import LABEL_CLOSE, LABEL_OPEN, format_histogram

    lines = [
        f"token lengths ({stats['tokenized']} samples tokenized):",
        format_histogram(stats),
        f"media: {stats['media']}",
    ]
    lines.append(f"preview (the loss trains on the text between {LABEL_OPEN} and {LABEL_CLOSE}):")
    lines += stats.get("preview", [])
    print("\n".join(lines), file=sys.stderr)


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
