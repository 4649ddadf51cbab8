"""Checkpoints that survive being killed at any moment, hold no pickle, and resume to the same loss curve.

A checkpoint is written into `output_dir/.staging/checkpoint-N`, every file is fsync'ed, a completion marker
(`openmind_checkpoint.json`, listing each file and its size) is written and fsync'ed LAST, and only then is the folder
renamed to `output_dir/checkpoint-N` (an atomic rename on one filesystem). So a `checkpoint-N` folder exists only when
it is complete, and resume takes the newest folder whose marker checks out; staging leftovers of a killed save are
deleted at the next start.

Everything in a checkpoint is safetensors or JSON (no `torch.load` of pickles on resume): the model
(`model.safetensors` or an adapter), `optimizer.safetensors` + `optimizer.json`, `scheduler.json`,
`rng_state[_<rank>].safetensors` + `.json`, `trainer_state.json`, `training_args.json`. (DeepSpeed and FSDP keep
their own sharded optimizer formats; those go through the stock code.)

The `Trainer` hooks that put these files in place live in `trl_internals.py` (`CheckpointHooks`); this module holds
the file formats and the sealing, and knows nothing of `Trainer`.

Resume also loads full fine-tuning weights strictly: transformers' `Trainer` loads them with `strict=False`, which
for LLaVA-style checkpoints silently matched nothing; here a missing or unexpected key is an error.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import safetensors.torch
import torch

logger = logging.getLogger(__name__)

MARKER_NAME = "openmind_checkpoint.json"
STAGING_DIR = ".staging"
OPTIMIZER_TENSORS, OPTIMIZER_META = "optimizer.safetensors", "optimizer.json"
SCHEDULER_NAME, SCALER_NAME, TRAINING_ARGS_NAME = "scheduler.json", "scaler.json", "training_args.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


# ----------------------------------------------------------------------------------------- completeness


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_marker(folder: str | os.PathLike, step: int) -> None:
    """Records every file of `folder` with its size, after fsync'ing them; the marker itself is fsync'ed last."""
    folder = Path(folder)
    _fsync_tree(folder)
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    tmp = folder / (MARKER_NAME + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"step": step, "files": files}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / MARKER_NAME)
    _fsync_dir(folder)


def is_complete_checkpoint(folder: str | os.PathLike) -> bool:
    """True when `folder` has a completion marker and every file it lists exists with the recorded size."""
    marker = Path(folder) / MARKER_NAME
    try:
        files = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all(
        (Path(folder) / name).is_file() and (Path(folder) / name).stat().st_size == size
        for name, size in files.items()
    )


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """`checkpoint-N` folders of `output_dir`, newest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))]
    return sorted(found, reverse=True)


def latest_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest COMPLETE checkpoint of `output_dir` (incomplete ones are logged and passed over), or None."""
    for _, path in list_checkpoints(output_dir):
        if is_complete_checkpoint(path):
            return str(path)
        logger.warning("Skipping %s: it has no valid completion marker (a save was interrupted).", path)
    return None


def resolve_resume(resume_from_checkpoint, output_dir: str | os.PathLike) -> str | None:
    """`None`/`False` -> None; `True`/`"latest"`/`"true"` -> the newest complete checkpoint (None when there is none:
    the run starts fresh); a path -> that path, which must be complete."""
    if resume_from_checkpoint in (None, False, "", "false", "False", "none", "None"):
        return None
    if resume_from_checkpoint is True or str(resume_from_checkpoint).lower() in ("latest", "true"):
        found = latest_complete_checkpoint(output_dir)
        if found is None:
            logger.info("No complete checkpoint in %s: starting from scratch.", output_dir)
        return found
    path = str(resume_from_checkpoint)
    if not is_complete_checkpoint(path):
        latest = latest_complete_checkpoint(Path(path).parent) if Path(path).parent.is_dir() else None
        raise ValueError(
            f"{path} is not a complete OpenMind checkpoint (no valid {MARKER_NAME}); partial checkpoints are never "
            f"loaded. The newest complete one next to it is {latest}; pass it, or --resume_from_checkpoint latest."
        )
    return path


def remove_staging(output_dir: str | os.PathLike) -> None:
    staging = Path(output_dir) / STAGING_DIR
    if staging.exists():
        logger.info("Removing leftovers of an interrupted save: %s", staging)
        shutil.rmtree(staging, ignore_errors=True)


def publish(staged: Path, final: Path) -> None:
    """Atomically moves a complete staged checkpoint into place (replacing an older one of the same step)."""
    if final.exists():
        trash = final.with_name(f"{STAGING_DIR}-old-{final.name}")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)  # the same step saved again (a run resumed from an earlier checkpoint)
        os.replace(staged, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staged, final)
    _fsync_dir(final.parent)


# --------------------------------------------------------------------------------- JSON + safetensors state


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"cannot store a {type(value).__name__} in a JSON checkpoint file")


def write_json(path: str, data) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, default=_json_default)


def save_optimizer_state(state_dict: dict, folder: str) -> None:
    """`optimizer.state_dict()` -> tensors in safetensors (`state.<param>.<name>`), the rest in JSON."""
    tensors, state_meta = {}, {}
    for param_id, state in state_dict["state"].items():
        state_meta[str(param_id)] = {}
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"state.{param_id}.{name}"] = value.detach().contiguous().cpu()
            else:
                state_meta[str(param_id)][name] = value
    safetensors.torch.save_file(tensors, os.path.join(folder, OPTIMIZER_TENSORS))
    write_json(os.path.join(folder, OPTIMIZER_META), {"state": state_meta, "param_groups": state_dict["param_groups"]})


def load_optimizer_state(folder: str, device="cpu") -> dict:
    with open(os.path.join(folder, OPTIMIZER_META), encoding="utf-8") as f:
        meta = json.load(f)
    state = {int(k): dict(v) for k, v in meta["state"].items()}
    for key, tensor in safetensors.torch.load_file(
        os.path.join(folder, OPTIMIZER_TENSORS), device=str(device)
    ).items():
        _, param_id, name = key.split(".", 2)
        state.setdefault(int(param_id), {})[name] = tensor
    groups = meta["param_groups"]
    for group in groups:  # JSON turned tuples into lists; optimizers compare/unpack them as tuples
        for key, value in group.items():
            if key != "params" and isinstance(value, list):
                group[key] = tuple(value)
    return {"state": state, "param_groups": groups}


def save_rng_state(path_stem: str) -> None:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {"torch_cpu": torch.random.get_rng_state(), "numpy_keys": torch.from_numpy(np.asarray(keys, np.int64))}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.random.get_rng_state_all()):
            tensors[f"cuda_{i}"] = s
    safetensors.torch.save_file(tensors, path_stem + ".safetensors")
    meta = {"python": [version, list(internal), gauss], "numpy": [kind, int(pos), int(has_gauss), float(cached)]}
    write_json(path_stem + ".json", meta)


def load_rng_state(path_stem: str) -> None:
    tensors = safetensors.torch.load_file(path_stem + ".safetensors")
    with open(path_stem + ".json", encoding="utf-8") as f:
        meta = json.load(f)
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.random.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda_")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.random.set_rng_state_all(cuda[: torch.cuda.device_count()])


# ------------------------------------------------------------------------------------------- weights


def load_weights_strictly(model, folder: str) -> None:
    """
    Loads a full fine-tuning checkpoint's weights into `model`, failing on any missing or unexpected key (tied
    weights excepted).

    Args:
        model (`PreTrainedModel`): the model to restore.
        folder (`str`): the checkpoint folder (`model.safetensors` or a sharded index).
    """
    state_dict = _read_safetensors_checkpoint(folder)
    result = model.load_state_dict(state_dict, strict=False)
    tied = set(_tied_keys(model))
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"Resuming from {folder} would not restore the weights: missing keys "
            f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected keys {result.unexpected_keys[:5]}. "
            "The checkpoint does not match this model (was it saved by another architecture or version?)."
        )
    logger.info("Restored %d weight tensors from %s", len(state_dict), folder)


def _read_safetensors_checkpoint(folder: str) -> dict:
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        state = {}
        for shard in shards:
            state.update(safetensors.torch.load_file(os.path.join(folder, shard), device="cpu"))
        return state
    single = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(single):
        raise FileNotFoundError(f"{folder} holds no model.safetensors (checkpoints are safetensors only).")
    return safetensors.torch.load_file(single, device="cpu")


def _tied_keys(model) -> list[str]:
    tied = getattr(model, "_tied_weights_keys", None) or {}
    keys = list(tied) if isinstance(tied, (dict, list, tuple, set)) else []
    return keys if getattr(model.config, "tie_word_embeddings", False) else []


__all__ = [
    "MARKER_NAME",
    "OPTIMIZER_META",
    "SCALER_NAME",
    "SCHEDULER_NAME",
    "STAGING_DIR",
    "TRAINING_ARGS_NAME",
    "is_complete_checkpoint",
    "latest_complete_checkpoint",
    "list_checkpoints",
    "load_optimizer_state",
    "load_rng_state",
    "load_weights_strictly",
    "publish",
    "remove_staging",
    "resolve_resume",
    "save_optimizer_state",
    "save_rng_state",
    "write_json",
    "write_marker",
]
