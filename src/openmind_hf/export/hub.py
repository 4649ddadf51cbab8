"""Publish a checkpoint to the Hugging Face Hub (or any Hub-compatible endpoint) with a generated model card.

    openmind push --model DIR --repo-id org/name [--private] [--endpoint URL] [--benchmarks results/benchmarks.json]
    openmind push --model DIR --repo-id org/name --dry-run     # checks DIR and prints the exact commit, sends nothing

One commit uploads: the safetensors weights, `config.json` / `generation_config.json`, the processor files (processor
and tokenizer configs, tokenizer, chat template), the remote-code files named by every `auto_map` (and the modules
they import), the quantization record when there is one, and a generated `README.md` ([`build_model_card`]).
Pickle files (`*.bin`, `*.pt`) and trainer internals are never uploaded.

The push is two `huggingface_hub` calls, `HfApi.create_repo` and `HfApi.create_commit`, whose arguments
[`plan_push`] builds without any network; `--dry-run` stops there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi

from .model_card import build_model_card
from .quantize import QUANTO_MAP_FILE, QUANTO_WEIGHTS_FILE

UPLOAD_SUFFIXES = (".safetensors", ".json", ".py", ".jinja", ".txt", ".model", ".tiktoken")
# Written by Trainer or by us for our own use; the card summarises what matters in them.
# run_summary.json holds local paths and skipped records (which quote the user's data): the card carries its numbers.
NEVER_UPLOADED = {
    "trainer_state.json",
    "training_args.json",
    "README.md",
    "all_results.json",
    "train_results.json",
    "run_summary.json",
    "log_history.json",
}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
PROCESSOR_FILES = ("processor_config.json", "tokenizer_config.json")


class CheckpointFilesError(ValueError):
    """The checkpoint directory lacks something a Hub user needs to load it."""


def _auto_map_modules(config_file: Path) -> set[str]:
    """Module names referenced by `auto_map` entries in a JSON config (also nested ones, e.g. in processor_config)."""
    modules: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "auto_map" and isinstance(value, dict):
                    for ref in value.values():
                        for item in ref if isinstance(ref, (list, tuple)) else [ref]:
                            if isinstance(item, str):
                                # "module.Class", or "repo--module.Class" when it points at another repo
                                modules.add(item.split("--")[-1].rsplit(".", 1)[0])
                else:
                    walk(value)

    walk(json.loads(config_file.read_text()))
    return modules


def remote_code_files(model_dir: Path) -> list[str]:
    """The `.py` files that `trust_remote_code` loading needs: every `auto_map` module and what it imports relatively.
    Raises [`CheckpointFilesError`] when one is missing or when `config.json` has no `auto_map`."""
    config_modules = _auto_map_modules(model_dir / "config.json")
    if not config_modules:
        raise CheckpointFilesError(
            f"{model_dir / 'config.json'} has no `auto_map`, so the Hub copy would not load without OpenMind installed. "
            "Save the checkpoint after `import openmind_hf` (it registers the classes for remote code)."
        )
    pending = set(config_modules)
    for name in PROCESSOR_FILES:
        if (model_dir / name).is_file():
            pending |= _auto_map_modules(model_dir / name)
    found: set[str] = set()
    while pending:
        module = pending.pop()
        path = model_dir / f"{module}.py"
        if not path.is_file():
            raise CheckpointFilesError(
                f"{model_dir} lacks {module}.py, named by an auto_map (or imported by one of its modules). Re-save the "
                "checkpoint with `save_pretrained` after `import openmind_hf`, which copies the code files."
            )
        found.add(path.name)
        for imported in re.findall(r"^\s*from \.(\w+) import", path.read_text(), flags=re.M):
            if f"{imported}.py" not in found:
                pending.add(imported)
    return sorted(found)


def weight_files(model_dir: Path) -> list[str]:
    """The safetensors weight files (all shards of an index); raises when there are none or a shard is missing."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [s for s in shards if not (model_dir / s).is_file()]
        if missing:
            raise CheckpointFilesError(f"{index} names shards that are not in {model_dir}: {missing}.")
        return [index.name, *shards]
    for single in ("model.safetensors", QUANTO_WEIGHTS_FILE):
        if (model_dir / single).is_file():
            return [single] + ([QUANTO_MAP_FILE] if single == QUANTO_WEIGHTS_FILE else [])
    pickles = [p.name for p in model_dir.iterdir() if p.suffix in PICKLE_SUFFIXES]
    hint = f" It has pickle weights ({', '.join(pickles)}): re-save with `save_pretrained`." if pickles else ""
    raise CheckpointFilesError(f"{model_dir} has no safetensors weights (model.safetensors or an index).{hint}")


def checkpoint_files(model_dir: str | Path) -> list[str]:
    """Every file of `model_dir` to upload (names relative to it), after checking that the checkpoint is complete:
    config, safetensors weights, processor files and remote code. Subfolders (e.g. `checkpoint-*`) are skipped."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise CheckpointFilesError(f"{model_dir} has no config.json: pass the directory written by `save_pretrained`.")
    missing = [name for name in PROCESSOR_FILES if not (model_dir / name).is_file()]
    if missing:
        raise CheckpointFilesError(
            f"{model_dir} lacks {', '.join(missing)}: save the processor there too (`processor.save_pretrained(DIR)`)."
        )
    required = set(weight_files(model_dir)) | set(remote_code_files(model_dir))
    extra = {
        p.name
        for p in model_dir.iterdir()
        if p.is_file() and p.suffix in UPLOAD_SUFFIXES and p.name not in NEVER_UPLOADED
    }
    if not (model_dir / QUANTO_WEIGHTS_FILE).is_file():
        extra.discard(QUANTO_MAP_FILE)
    return sorted(required | extra)


def build_commit_operations(model_dir: str | Path, card: str) -> list[CommitOperationAdd]:
    """One `CommitOperationAdd` per file of [`checkpoint_files`], plus the generated `README.md`."""
    model_dir = Path(model_dir)
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=model_dir / name) for name in checkpoint_files(model_dir)
    ]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode()))
    return operations


@dataclass
class PushPlan:
    """The two `HfApi` calls a push makes, with their exact arguments."""

    endpoint: str
    create_repo_kwargs: dict
    create_commit_kwargs: dict
    card: str
    commit_url: str | None = None
    files: list[str] = field(default_factory=list)

    def describe(self) -> str:
        ops = self.create_commit_kwargs["operations"]
        lines = [
            f"endpoint: {self.endpoint}",
            f"HfApi.create_repo({', '.join(f'{k}={v!r}' for k, v in self.create_repo_kwargs.items())})",
            f"HfApi.create_commit(repo_id={self.create_commit_kwargs['repo_id']!r}, "
            f"commit_message={self.create_commit_kwargs['commit_message']!r}, {len(ops)} operations):",
        ]
        for op in ops:
            lines.append(
                f"  add {op.path_in_repo:<40} {op.upload_info.size:>12,d} B  sha256 {op.upload_info.sha256.hex()[:16]}"
            )
        return "\n".join(lines)


def plan_push(
    model_dir: str | Path,
    repo_id: str,
    private: bool = False,
    endpoint: str | None = None,
    benchmarks: dict | str | Path | None = None,
    license: str = "apache-2.0",
    commit_message: str | None = None,
) -> PushPlan:
    """Checks `model_dir`, writes the card and builds the `create_repo` / `create_commit` arguments. No network."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise ValueError(f"--repo-id must look like org/name, got {repo_id!r}.")
    card = build_model_card(model_dir, repo_id, benchmarks=benchmarks, license=license)
    operations = build_commit_operations(model_dir, card)
    return PushPlan(
        endpoint=HfApi(endpoint=endpoint).endpoint,
        create_repo_kwargs={"repo_id": repo_id, "private": private, "repo_type": "model", "exist_ok": True},
        create_commit_kwargs={
            "repo_id": repo_id,
            "operations": operations,
            "commit_message": commit_message or f"Upload OpenMind checkpoint ({len(operations)} files)",
            "repo_type": "model",
        },
        card=card,
        files=[op.path_in_repo for op in operations],
    )


def push_checkpoint(
    model_dir: str | Path,
    repo_id: str,
    private: bool = False,
    endpoint: str | None = None,
    benchmarks: dict | str | Path | None = None,
    license: str = "apache-2.0",
    commit_message: str | None = None,
    dry_run: bool = False,
    token: str | None = None,
) -> PushPlan:
    """Pushes the checkpoint at `model_dir` to `repo_id` in one commit and returns the plan (with `commit_url`).

    Args:
        model_dir (`str` or `Path`): a checkpoint saved with `save_pretrained` (model + processor).
        repo_id (`str`): `org/name`.
        private (`bool`, *optional*, defaults to `False`): create the repository as private.
        endpoint (`str`, *optional*): Hub URL; defaults to `HF_ENDPOINT` / huggingface.co.
        benchmarks (`dict` or path, *optional*): an `openmind eval` report to show in the card.
        dry_run (`bool`, *optional*, defaults to `False`): build and return the plan without sending anything.
        token (`str`, *optional*): Hub token; defaults to the logged-in one / `HF_TOKEN`.
    """
    plan = plan_push(model_dir, repo_id, private, endpoint, benchmarks, license, commit_message)
    if dry_run:
        return plan
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(**plan.create_repo_kwargs)
    info = api.create_commit(**plan.create_commit_kwargs)
    plan.commit_url = info.commit_url
    return plan


__all__ = [
    "CheckpointFilesError",
    "PushPlan",
    "checkpoint_files",
    "remote_code_files",
    "weight_files",
    "build_commit_operations",
    "plan_push",
    "push_checkpoint",
]
