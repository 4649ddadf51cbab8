"""transformers' own common test mixins, fetched at test time from the source distribution of the installed version.

The mixins (`ModelTesterMixin`, `PipelineTesterMixin`, `ProcessorTesterMixin`, `ConfigTester`) live in transformers'
repository, not in the wheel, and nothing of them is copied into this repo: `pip download --no-binary :all:` fetches
the sdist of the pinned version into a cache outside the repo (`$OPENMIND_TEST_CACHE`, defaults to
`~/.cache/openmind-test`), and its `tests/` folder is made importable as the package `hf_sdist_tests_pkg`.

Three modules the sdist's `test_modeling_common.py` / `test_configuration_common.py` import are only in the git
repository (`generation/test_utils.py`, `exporters/test_export.py`, `utils/test_configuration_utils.py`). They are
replaced by empty placeholders written into the cache, so the generation and export mixins contribute no tests here:
`tests/test_transformers_common.py` covers the generation behaviours (assisted decoding, prompt lookup, static cache,
compile, past key values) itself.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import transformers

PACKAGE = "hf_sdist_tests_pkg"

# Placeholders for the modules the sdist lacks: names only, no test logic.
_PLACEHOLDERS = {
    "generation/test_utils.py": (
        "class GenerationTesterMixin:\n"
        '    """Placeholder: the generation mixin is not in the sdist (OpenMind covers it in its own tests)."""\n'
    ),
    "exporters/test_export.py": (
        'class ExportTesterMixin:\n    """Placeholder: the export mixin is not in the sdist."""\n'
    ),
    "utils/test_configuration_utils.py": "config_common_kwargs = {}  # the real table is not in the sdist\n",
}


def cache_dir() -> Path:
    return Path(os.environ.get("OPENMIND_TEST_CACHE", Path.home() / ".cache" / "openmind-test"))


def _download_sdist(version: str, target: Path) -> Path:
    """The sdist archive for `version`, downloaded once into `target`; raises `RuntimeError` with pip's error."""
    archive = target / f"transformers-{version}.tar.gz"
    if archive.exists():
        return archive
    target.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "-q"]
    command += ["-d", str(target), f"transformers=={version}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not archive.exists():
        raise RuntimeError(f"pip download of transformers=={version} failed: {done.stderr.strip()[-500:]}")
    return archive


def ensure_importable() -> str:
    """Makes the sdist's `tests/` importable as `hf_sdist_tests_pkg`; returns the package name.

    Raises `RuntimeError` (the reason to skip) when the sdist cannot be fetched (no network, no such version).
    """
    version = transformers.__version__
    root = cache_dir() / f"transformers-{version}-tests"
    if not (root / "fetch_hub_objects_for_ci.py").exists():
        archive = _download_sdist(version, cache_dir())
        staging = root.with_suffix(".partial")
        shutil.rmtree(staging, ignore_errors=True)
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(f"transformers-{version}/tests/")]
            tar.extractall(staging, members=members, filter="data")
        (staging / PACKAGE).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging / f"transformers-{version}" / "tests"), str(staging / PACKAGE))
        for relative, text in _PLACEHOLDERS.items():
            path = staging / PACKAGE / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_text(text)
        # test_pipeline_mixin.py reads these two paths next to its folder at import; the tiny-model table and the
        # pipeline test bodies are not in the sdist, so its tests skip ("no model architecture in the JSON file").
        (staging / "tests" / "utils").mkdir(parents=True, exist_ok=True)
        (staging / "tests" / "utils" / "tiny_model_summary.json").write_text("{}")
        # test_processing_common.py imports this CI helper (from the repository's utils/) to map media URLs to
        # pre-fetched files; here URLs stay URLs, so the tests that need them need the network.
        (staging / "fetch_hub_objects_for_ci.py").write_text("def url_to_local_path(url, **kwargs):\n    return url\n")
        (staging / "src").mkdir(exist_ok=True)
        (staging / "src" / "transformers").symlink_to(Path(transformers.__file__).parent)
        for folder in [staging / PACKAGE, *[p for p in (staging / PACKAGE).rglob("*") if p.is_dir()]]:
            (folder / "__init__.py").touch()
        shutil.rmtree(root, ignore_errors=True)
        staging.rename(root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    return PACKAGE


__all__ = ["cache_dir", "ensure_importable", "PACKAGE"]
