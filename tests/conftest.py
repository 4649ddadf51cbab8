"""Shared fixtures: an isolated HF cache, and the tiny preset built once per session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Nothing a test does may land in the user's caches, and nothing may reach the network.
_SESSION_HOME = tempfile.mkdtemp(prefix="openmind-tests-")
os.environ.setdefault("HF_HOME", os.path.join(_SESSION_HOME, "hf"))
os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(_SESSION_HOME, "torch_ext"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OPENMIND_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def tiny_model_and_processor():
    from openmind_hf import build_tiny_preset

    return build_tiny_preset(seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The tiny preset saved once per session (treat as read-only)."""
    from openmind_hf import build_tiny_preset

    path = tmp_path_factory.mktemp("tiny-preset")
    build_tiny_preset(path, seed=0)
    return path
