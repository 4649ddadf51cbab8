"""Checkpoints that survive being killed at any moment, hold no pickle, and resume to the same loss curve.

A checkpoint is written into `output_dir/.staging/checkpoint-N`, every file is fsync'ed, a completion marker
(`openmind_checkpoint.json`, listing each file with its size and sha256) is written and fsync'ed LAST, and only then
is the folder renamed to `output_dir/checkpoint-N` (an atomic rename on one filesystem). So a `checkpoint-N` folder
exists only when it is complete; resume re-hashes every file and takes the newest folder that verifies, warning with
the file at fault for each newer one passed over (same-size bit rot or garbage is caught here, not as NaN losses or a
raw `SafetensorError` later); staging leftovers of a killed save are deleted at the next start. Weights holding NaN or
inf are never saved (`check_finite`).

Everything in a checkpoint is safetensors or JSON (no `torch.load` of pickles on resume): the model
(`model.safetensors` or an adapter), `optimizer.safetensors` + `optimizer.json`, `scheduler.json`,
`rng_state[_<rank>].safetensors` + `.json`, `trainer_state.json`, `training_args.json`. (DeepSpeed and FSDP keep
their own sharded optimizer formats; those go through the stock code, which reads them with `torch.load`:
`check_pickled_state` logs each such file and why, and refuses pickles OpenMind did not write, e.g. a stock Trainer
checkpoint's `optimizer.pt` / `scheduler.pt` / `rng_state.pth`, unless `--allow_pickled_checkpoint_state`.)

The `Trainer` hooks that put these files in place live in `trl_internals.py` (`CheckpointHooks`); this module holds
the file formats and the sealing, and knows nothing of `Trainer`.

Resume also loads full fine-tuning weights strictly: transformers' `Trainer` loads them with `strict=False`, which
for LLaVA-style checkpoints silently matched nothing; here a missing or unexpected key is an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
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


# ------------------------------------------------------------------------------------- completeness + integrity

_HASH_CHUNK = 8 << 20  # 8 MiB reads: hashing streams at disk speed without holding a shard in memory


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_and_hash(path: Path) -> str:
    """fsyncs `path` and returns its sha256, in one read (the file was just written, so it is in the page cache)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _map_files(function, paths: list[Path]) -> list:
    """`function` over `paths` on a few threads: hashlib releases the GIL on large buffers, so the shards of a big
    checkpoint (weights, optimizer, one RNG file per rank) hash in parallel."""
    if len(paths) <= 1:
        return [function(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1, len(paths))) as pool:
        return list(pool.map(function, paths))


def write_marker(folder: str | os.PathLike, step: int) -> None:
    """Records every file of `folder` with its size and sha256, after fsync'ing them; the marker itself is fsync'ed
    last, so it exists only once everything it lists is on disk."""
    folder = Path(folder)
    paths = [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in (MARKER_NAME, MARKER_NAME + ".tmp")  # a re-seal lists no old marker
    ]
    hashes = _map_files(_fsync_and_hash, paths)
    files = {
        str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": digest} for p, digest in zip(paths, hashes)
    }
    _fsync_dir(folder)
    tmp = folder / (MARKER_NAME + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"step": step, "files": files}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / MARKER_NAME)
    _fsync_dir(folder)


def _read_marker(folder: Path) -> dict | None:
    try:
        files = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return files if isinstance(files, dict) else None


def _size_problem(folder: Path, files: dict) -> str | None:
    for name, record in files.items():
        size = record["size"] if isinstance(record, dict) else record  # markers before hashes held the size only
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != size:
            return f"{path} has {path.stat().st_size} bytes, the marker recorded {size}"
    return None


def checkpoint_problem(folder: str | os.PathLike, verify_hashes: bool = True) -> str | None:
    """
    What is wrong with the checkpoint `folder`, or None when it checks out.

    Args:
        folder (`str` or `os.PathLike`): a `checkpoint-N` folder.
        verify_hashes (`bool`, *optional*, defaults to True): also re-hash every file and compare with the sha256 in
            the marker (catches same-size corruption: bit rot, a file overwritten in place); False checks presence and
            sizes only (a save cut short).

    Returns:
        `str` or None: one sentence naming the file at fault.
    """
    folder = Path(folder)
    files = _read_marker(folder)
    if files is None:
        return f"{folder / MARKER_NAME} is missing or unreadable (the save was interrupted)"
    problem = _size_problem(folder, files)
    if problem is not None or not verify_hashes:
        return problem
    hashed = {name: r["sha256"] for name, r in files.items() if isinstance(r, dict) and r.get("sha256") is not None}
    for name, digest in zip(hashed, _map_files(sha256_file, [folder / name for name in hashed])):
        if digest != hashed[name]:
            return f"{folder / name} does not match the sha256 recorded when it was saved (the file is corrupted)"
    return None


def is_complete_checkpoint(folder: str | os.PathLike, verify_hashes: bool = False) -> bool:
    """True when `folder` has a completion marker and every file it lists exists with the recorded size (and, with
    `verify_hashes`, the recorded sha256)."""
    return checkpoint_problem(folder, verify_hashes=verify_hashes) is None


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """`checkpoint-N` folders of `output_dir`, newest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))]
    return sorted(found, reverse=True)


def latest_complete_checkpoint(output_dir: str | os.PathLike, verify_hashes: bool = True) -> str | None:
    """
    The newest checkpoint of `output_dir` that is complete and (with `verify_hashes`, the default) whose files match
    their recorded sha256, or None. Checkpoints passed over are logged, each with the file at fault; when a newer
    one was corrupted (not merely interrupted), a warning also names the checkpoint used instead.
    """
    corrupted = []
    for _, path in list_checkpoints(output_dir):
        problem = checkpoint_problem(path, verify_hashes=verify_hashes)
        if problem is None:
            if corrupted:
                logger.warning(
                    "Falling back to %s: newer checkpoint(s) failed verification (%s).", path, "; ".join(corrupted)
                )
            return str(path)
        logger.warning("Skipping %s: %s.", path, problem)
        if MARKER_NAME not in problem:  # interrupted saves are expected after a kill; corruption is not
            corrupted.append(problem)
    if corrupted:
        logger.warning("No checkpoint in %s verifies (%s).", output_dir, "; ".join(corrupted))
    return None


def _is_foreign_checkpoint(path: Path) -> bool:
    """A checkpoint written by stock `Trainer` (or another tool), not by OpenMind: it has `trainer_state.json` but no
    completion marker."""
    return not (path / MARKER_NAME).exists() and (path / "trainer_state.json").is_file()


def resolve_resume(
    resume_from_checkpoint, output_dir: str | os.PathLike, allow_pickled_checkpoint_state: bool = False
) -> str | None:
    """
    Which checkpoint to resume from.

    Args:
        resume_from_checkpoint (`bool`, `str` or None): `None`/`False` -> None; `True`/`"latest"`/`"true"` -> the
            newest checkpoint of `output_dir` that verifies (None when there is none: the run starts fresh); a path ->
            that path, which must verify (an error names the file at fault otherwise).
        output_dir (`str` or `os.PathLike`): the run folder.
        allow_pickled_checkpoint_state (`bool`, *optional*, defaults to False): accept an explicit path to a
            checkpoint not written by OpenMind (no completion marker, so neither completeness nor integrity can be
            checked; its state is pickled, see `pickled_state_files`).
    """
    if resume_from_checkpoint in (None, False, "", "false", "False", "none", "None"):
        return None
    if resume_from_checkpoint is True or str(resume_from_checkpoint).lower() in ("latest", "true"):
        found = latest_complete_checkpoint(output_dir)
        if found is None:
            logger.info("No complete, verified checkpoint in %s: starting from scratch.", output_dir)
        return found
    path = Path(str(resume_from_checkpoint))
    if allow_pickled_checkpoint_state and _is_foreign_checkpoint(path):
        logger.warning(
            "%s has no %s (not written by OpenMind): its completeness and integrity cannot be verified; resuming "
            "from it because --allow_pickled_checkpoint_state is set.",
            path,
            MARKER_NAME,
        )
        return str(path)
    problem = checkpoint_problem(path)
    if problem is not None:
        latest = latest_complete_checkpoint(path.parent) if path.parent.is_dir() else None
        foreign = (
            " It looks like a stock Trainer checkpoint (pickled state): pass --allow_pickled_checkpoint_state to "
            "resume from it if you trust where it came from."
            if _is_foreign_checkpoint(path)
            else ""
        )
        raise ValueError(
            f"Cannot resume from {path}: {problem}; a checkpoint that fails verification is never loaded. The newest "
            f"verified one next to it is {latest}; pass it, or --resume_from_checkpoint latest.{foreign}"
        )
    return str(path)


# --------------------------------------------------------------------------------------------- pickled state

_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl")
# Why stock code would read each pickled file on resume (first matching prefix of the file name wins).
_PICKLE_REASONS = (
    ("training_args.bin", "stock Trainer pickles its TrainingArguments; OpenMind never reads it on resume"),
    ("scheduler", "stock Trainer's LR scheduler state (torch.save)"),
    ("optimizer", "stock Trainer / FSDP optimizer state (torch.save)"),
    ("rng_state", "stock Trainer's RNG state (torch.save)"),
    ("scaler", "stock Trainer's grad-scaler state (torch.save)"),
    ("pytorch_model", "pickled weights (torch.save)"),
)


def pickled_state_files(folder: str | os.PathLike) -> list[tuple[str, str]]:
    """`(relative file name, why resume would read it with torch.load)` for every pickled file of a checkpoint;
    DeepSpeed's ZeRO files (`global_step*/`) say so."""
    folder = Path(folder)
    found = []
    for path in sorted(folder.rglob("*")):
        if not (path.is_file() and (path.suffix in _PICKLE_SUFFIXES or path.name == ".metadata")):
            continue
        name = str(path.relative_to(folder))
        if name.startswith("global_step"):
            why = "DeepSpeed's own ZeRO checkpoint format (torch.save; DeepSpeed has no pickle-free format)"
        else:
            why = next((w for prefix, w in _PICKLE_REASONS if path.name.startswith(prefix)), "a torch.save pickle")
            if path.name == ".metadata":
                why = "torch.distributed.checkpoint metadata (pickled), FSDP's sharded state"
        found.append((name, why))
    return found


def check_pickled_state(folder: str | os.PathLike, allow_pickled_checkpoint_state: bool = False) -> None:
    """
    Before resuming from `folder`: logs every pickled file the resume may read with `torch.load`, and why; refuses
    (ValueError naming the files) those that neither OpenMind's verified marker lists (written by this pipeline's
    DeepSpeed/FSDP save path) nor are DeepSpeed's own, unless `allow_pickled_checkpoint_state`.

    Args:
        folder (`str` or `os.PathLike`): the resolved checkpoint.
        allow_pickled_checkpoint_state (`bool`, *optional*, defaults to False): the user's opt-in
            (`--allow_pickled_checkpoint_state`).
    """
    listed = _read_marker(Path(folder)) or {}
    refused = []
    for name, why in pickled_state_files(folder):
        if name.endswith("training_args.bin"):
            logger.info("Ignoring %s in %s: %s.", name, folder, why)
        elif name.startswith("global_step") or name in listed:
            origin = "" if name.startswith("global_step") else "; listed and hash-verified in this checkpoint's marker"
            logger.warning("Resume reads %s/%s with torch.load: %s%s.", folder, name, why, origin)
        elif allow_pickled_checkpoint_state:
            logger.warning(
                "Resume reads %s/%s with torch.load: %s; allowed by --allow_pickled_checkpoint_state.",
                folder,
                name,
                why,
            )
        else:
            refused.append(f"{name} ({why})")
    if refused:
        raise ValueError(
            f"Refusing to resume from {folder}: it holds pickled state that OpenMind did not write and would have to "
            f"read with torch.load: {'; '.join(refused)}. A pickle can run code when loaded. If you trust where this "
            "checkpoint came from, pass --allow_pickled_checkpoint_state; otherwise start from its weights "
            "(--model_name_or_path) without resuming."
        )


def resume_checkpoint(
    resume_from_checkpoint, output_dir: str | os.PathLike, allow_pickled_checkpoint_state: bool = False
) -> str | None:
    """`resolve_resume` followed by `check_pickled_state` on the checkpoint it picked (arguments as there)."""
    resolved = resolve_resume(resume_from_checkpoint, output_dir, allow_pickled_checkpoint_state)
    if resolved is not None:
        check_pickled_state(resolved, allow_pickled_checkpoint_state)
    return resolved


# ------------------------------------------------------------------------------------------ finite weights


def check_finite(state_dict: dict, where: str, output_dir: str | os.PathLike | None = None) -> None:
    """
    Refuses to save weights holding NaN or inf. Per floating tensor, one fp32-accumulated `sum()` first: any NaN/inf
    element makes it non-finite, it allocates nothing and runs ~20x faster than `torch.isfinite(t).all()` on CPU
    (0.14 s vs 2.9 s per GiB of fp32, one thread); only a non-finite sum (a real NaN/inf, or an overflowing sum of
    finite values) is confirmed with the exact, element-wise check.

    Args:
        state_dict (`dict[str, torch.Tensor]`): what is about to be saved.
        where (`str`): what is being saved, for the message (e.g. `"checkpoint-40"`).
        output_dir (`str`, *optional*): the run folder, searched for the newest verified checkpoint to suggest.
    """
    for name, tensor in state_dict.items():
        if not (torch.is_tensor(tensor) and tensor.is_floating_point()):
            continue
        if bool(torch.isfinite(tensor.sum(dtype=torch.float32))) or bool(torch.isfinite(tensor).all()):
            continue
        bad = int((~torch.isfinite(tensor)).sum())
        latest = latest_complete_checkpoint(output_dir) if output_dir is not None else None
        resume = f"--resume_from_checkpoint {latest}" if latest else "restart from the starting model"
        raise FloatingPointError(
            f"Refusing to save {where}: weight {name} has {bad} non-finite value(s) (NaN/inf) of {tensor.numel()}; "
            "training diverged. Lower --learning_rate, enable gradient clipping (--max_grad_norm 1.0) or warmup "
            f"(--warmup_ratio 0.05), and {resume}."
        )


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


def _load_safetensors(path: str, device: str = "cpu") -> dict:
    """`safetensors.torch.load_file`, with a corrupted file reported by name (a checkpoint sealed before markers
    held hashes, or one loaded without verification, is otherwise a raw `SafetensorError`)."""
    try:
        return safetensors.torch.load_file(path, device=device)
    except safetensors.SafetensorError as err:
        raise ValueError(
            f"{path} is not a readable safetensors file ({err}): the checkpoint is corrupted. Resume from an earlier "
            "checkpoint (--resume_from_checkpoint latest passes over checkpoints that fail verification)."
        ) from None


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
    for key, tensor in _load_safetensors(os.path.join(folder, OPTIMIZER_TENSORS), device=str(device)).items():
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
    tensors = _load_safetensors(path_stem + ".safetensors")
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
            state.update(_load_safetensors(os.path.join(folder, shard)))
        return state
    single = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(single):
        raise FileNotFoundError(f"{folder} holds no model.safetensors (checkpoints are safetensors only).")
    return _load_safetensors(single)


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
    "check_finite",
    "check_pickled_state",
    "checkpoint_problem",
    "is_complete_checkpoint",
    "latest_complete_checkpoint",
    "list_checkpoints",
    "load_optimizer_state",
    "load_rng_state",
    "load_weights_strictly",
    "pickled_state_files",
    "publish",
    "remove_staging",
    "resolve_resume",
    "resume_checkpoint",
    "save_optimizer_state",
    "save_rng_state",
    "sha256_file",
    "write_json",
    "write_marker",
]
