"""The `openmind` command: parses and dispatches, nothing more.

Each subcommand lives with its feature, in a module exposing `add_arguments(parser)` and `run(args) -> int`.
Modules are imported only when their subcommand runs, so `openmind --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "preset": ("openmind_hf.building.commands", "build and save a preset model + processor (e.g. `tiny`)"),
    "convert": ("openmind_hf.export.convert_llava", "convert a transformers LLaVA checkpoint to OpenMind"),
    "data": ("openmind_hf.data.commands", "write synthetic demo data or download/convert public datasets"),
    "train": ("openmind_hf.training.commands", "run a training stage (pretrain, sft, dpo, reward, grpo)"),
    "eval": ("openmind_hf.evaluation.commands", "evaluate a model on benchmark tasks, write a JSON report"),
    "serve": ("openmind_hf.serving.commands", "serve a model behind an OpenAI-compatible HTTP API"),
    "chat": ("openmind_hf.chat.commands", "a web chat (Gradio) for a checkpoint or an OpenAI-compatible endpoint"),
    "quantize": ("openmind_hf.export.quantize_commands", "quantize a checkpoint to int8 / int4"),
    "push": ("openmind_hf.export.hub_commands", "push a checkpoint with its model card to the Hub"),
}


def _load(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (err.name == module_name or module_name.startswith(err.name + ".")):
            return None
        raise


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openmind", description="OpenMind: vision + audio + text chat models.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        # Only the chosen subcommand's module is imported: its arguments are all that --help needs.
        if name == chosen:
            module = _load(module_name)
            if module is None:
                parser.error(f"`openmind {name}` is not available in this installation ({module_name} is missing).")
            module.add_arguments(sub)
            sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
