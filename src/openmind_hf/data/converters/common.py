"""What every converter shares: finding the upstream files, writing our JSONL, fetching files with clear errors."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

VQA_PROMPT = "Answer the question using a single word or phrase."


def find_file(input_dir: str | os.PathLike, *patterns: str, what: str) -> Path:
    """The first file under `input_dir` matching one of the glob `patterns` (recursive), or a `DataError`."""
    root = Path(input_dir)
    for pattern in patterns:
        found = sorted(root.rglob(pattern))
        if found:
            return found[0]
    raise DataError(
        f"no {what} under {root} (looked for {', '.join(patterns)})",
        source=str(root),
        hint="point --input at the folder holding the upstream files, or drop --input to download them",
    )


def load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"invalid JSON ({err.msg} at line {err.lineno})", source=str(path)) from err


def write_jsonl(path: Path, records: Iterable[dict], limit: int | None = None) -> int:
    """Write `records` (at most `limit`) to `path`, one JSON object per line; returns how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            if limit is not None and count >= limit:
                break
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def save_image_bytes(image: dict | bytes, output_dir: Path, name: str) -> str:
    """Write an embedded image (`{"bytes", "path"}` from a Parquet column, or raw bytes) under `output_dir/images/`;
    returns the path relative to `output_dir`."""
    data = image.get("bytes") if isinstance(image, dict) else image
    if not data:
        raise DataError(f"image for {name} has no bytes", hint="the upstream row is broken; drop it")
    suffix = Path(image.get("path") or "").suffix if isinstance(image, dict) else ""
    if not suffix:
        suffix = ".png" if data[:8] == b"\x89PNG\r\n\x1a\n" else ".jpg"
    relative = f"images/{name}{suffix}"
    (output_dir / "images").mkdir(parents=True, exist_ok=True)
    (output_dir / relative).write_bytes(data)
    return relative


def media_path(media_dir: str | os.PathLike, relative: str, output_dir: str | os.PathLike) -> str:
    """`media_dir/relative` written relative to `output_dir`, where the JSONL goes: loaders resolve media paths
    against the JSONL's folder by default, so converted files work wherever the upstream media already lie."""
    return Path(os.path.relpath(Path(media_dir) / relative, Path(output_dir))).as_posix()


def extract_archives(folder: Path) -> None:
    """Unpack the .zip / .tar(.gz) archives in `folder` once (a `.extracted` marker records it)."""
    import tarfile
    import zipfile

    for archive in sorted(folder.iterdir()):
        marker = archive.with_name(archive.name + ".extracted")
        if marker.exists():
            continue
        if archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as z:
                z.extractall(folder)
        elif archive.name.endswith((".tar", ".tar.gz", ".tgz")):
            with tarfile.open(archive) as t:
                t.extractall(folder, filter="data")  # "data": no absolute paths, links out, or devices
        else:
            continue
        marker.touch()


def count_invalid(counts: dict, message: str, keep: int = 5) -> None:
    """Count one upstream row left out (`counts["invalid"]`) and keep the first `keep` messages as examples."""
    counts["invalid"] = counts.get("invalid", 0) + 1
    examples = counts.setdefault("invalid_examples", [])
    if len(examples) < keep:
        examples.append(message)


def most_common(answers: list[str]) -> str:
    """The most frequent answer (first seen wins ties): the VQA convention for a single training target."""
    counts: dict[str, int] = {}
    for answer in answers:
        counts[answer] = counts.get(answer, 0) + 1
    return max(counts, key=counts.get)


# ------------------------------------------------------------------------------------------------ fetching


@dataclass(frozen=True)
class Remote:
    """One upstream file: on the Hugging Face Hub (`repo_id` + `filename`) or at a plain `url`."""

    filename: str
    repo_id: str | None = None
    repo_type: str = "dataset"
    url: str | None = None

    @property
    def where(self) -> str:
        if self.url is not None:
            return self.url
        return f"the Hugging Face Hub {self.repo_type} {self.repo_id!r}, file {self.filename!r}"


@dataclass
class FetchError(RuntimeError):
    """Every upstream file that could not be fetched, and why."""

    dataset: str
    failures: list[tuple[Remote, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"could not download the {self.dataset!r} dataset:"]
        lines += [f"  - could not reach {remote.where}: {reason}" for remote, reason in self.failures]
        lines.append(
            "Download these files by hand into one folder and run `openmind data download --dataset "
            f"{self.dataset} --input FOLDER --output OUT` to convert them without a network."
        )
        return "\n".join(lines)


def download_url(url: str, destination: Path, timeout: float = 60.0) -> Path:
    """Download `url` to `destination` (written to a temporary name first, so a failed download leaves nothing)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as f:
        shutil.copyfileobj(response, f)
    partial.replace(destination)
    return destination


def fetch(dataset: str, remotes: list[Remote], raw_dir: Path) -> Path:
    """Fetch every remote into `raw_dir`; raise one `FetchError` naming everything that could not be reached."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    for remote in remotes:
        if any(p.stat().st_size > 0 for p in raw_dir.glob(remote.filename)):
            continue  # fetched before
        try:
            if remote.url is not None:
                download_url(remote.url, raw_dir / remote.filename)
            elif "*" in remote.filename:
                from huggingface_hub import snapshot_download

                snapshot_download(
                    repo_id=remote.repo_id,
                    repo_type=remote.repo_type,
                    allow_patterns=[remote.filename],
                    local_dir=raw_dir,
                    endpoint=os.environ.get("HF_ENDPOINT"),
                )
                if not any(raw_dir.glob(remote.filename)):
                    raise FileNotFoundError(f"no file in the repository matches {remote.filename!r}")
            else:
                from huggingface_hub import hf_hub_download

                hf_hub_download(
                    repo_id=remote.repo_id,
                    filename=remote.filename,
                    repo_type=remote.repo_type,
                    local_dir=raw_dir,
                    endpoint=os.environ.get("HF_ENDPOINT"),  # read now: huggingface_hub reads it only at import
                )
        except Exception as err:  # noqa: BLE001 - every failure is collected and reported together
            failures.append((remote, f"{type(err).__name__}: {err}".splitlines()[0][:300]))
    if failures:
        raise FetchError(dataset, failures)
    return raw_dir


__all__ = [
    "VQA_PROMPT",
    "FetchError",
    "Remote",
    "count_invalid",
    "download_url",
    "extract_archives",
    "fetch",
    "find_file",
    "load_json",
    "media_path",
    "most_common",
    "save_image_bytes",
    "write_jsonl",
]
