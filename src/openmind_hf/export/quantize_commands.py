"""`openmind quantize`: int8 / int4 export of a checkpoint, with size and accuracy against the original.

    openmind quantize --model DIR --bits 8 --output DIR_INT8
    openmind quantize --model DIR --bits 4 --output DIR_INT4 --keep-towers-fp
    openmind quantize --model DIR --bits 4 --output DIR_NF4 --backend bnb --device cuda

See `openmind_hf.export.quantize` for the backends and what each writes.
"""

from __future__ import annotations

import argparse
import logging
import sys

# Not imported from `.quantize` (which imports torch): `openmind quantize --help` must stay instant.
BACKENDS = ("auto", "torchao", "quanto", "bnb")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="full-precision checkpoint directory")
    parser.add_argument("--bits", type=int, choices=[8, 4], required=True, help="weight bits")
    parser.add_argument("--output", required=True, help="directory for the quantized checkpoint")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto: torchao for int8 (and int4 on CUDA), optimum-quanto for int4 on CPU; bnb needs CUDA",
    )
    parser.add_argument(
        "--keep-towers-fp",
        action="store_true",
        help="keep the vision and audio towers and their projectors in full precision",
    )
    parser.add_argument("--device", default=None, help="cuda for the CUDA-only paths (bnb, torchao int4); default cpu")
    parser.add_argument(
        "--dtype", default="auto", help="dtype of the unquantized parts, e.g. bfloat16 (default: the checkpoint's)"
    )
    parser.add_argument("--group-size", type=int, default=64, help="int4 group size for torchao (default 64)")
    parser.add_argument(
        "--allow-pickled-weights",
        action="store_true",
        help="also read a --model whose weights are only pickled (pytorch_model.bin); unpickling can run code, "
        "so pass it only for files you trust (the output is safetensors either way)",
    )
    parser.add_argument(
        "--probe-tokens", type=int, default=16, help="greedy tokens compared with the original (0 skips the check)"
    )


def run(args: argparse.Namespace) -> int:
    from .quantize import quantize_checkpoint

    _show_stages()
    try:
        report = quantize_checkpoint(
            args.model,
            args.output,
            bits=args.bits,
            backend=args.backend,
            keep_towers_fp=args.keep_towers_fp,
            device=args.device,
            dtype=args.dtype,
            group_size=args.group_size,
            probe_new_tokens=args.probe_tokens,
            allow_pickled_weights=args.allow_pickled_weights,
            progress=True,
        )
    except (ValueError, ImportError, OSError) as err:
        raise SystemExit(f"openmind quantize: {err}") from None
    print(report.summary())
    print(
        f"saved to {args.output}: load it like any checkpoint (AutoModelForImageTextToText.from_pretrained, "
        "pipeline, openmind eval / serve --model)"
    )
    return 0


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a line is logged (tests and notebooks swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _show_stages() -> None:
    """Prints quantize's stage lines on stderr (only our logger: other libraries keep their own levels)."""
    stage_logger = logging.getLogger("openmind_hf.export.quantize")
    if not any(isinstance(h, _StderrHandler) for h in stage_logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("openmind quantize: %(message)s"))
        stage_logger.addHandler(handler)
    stage_logger.setLevel(logging.INFO)


__all__ = ["add_arguments", "run"]
