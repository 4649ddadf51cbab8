"""Hub publishing: the files and commit a push sends, the model card, and a real pull by repo id through `olah`.

No read-write Hub server can be installed here, so the push is tested up to the exact `HfApi.create_repo` /
`HfApi.create_commit` arguments (`--dry-run`). The pull is real: the push plan's operations are committed (weights
through git-lfs) into a git repository that `olah`, a Hub-compatible server, serves offline on 127.0.0.1; then a fresh
Python process with `HF_ENDPOINT` pointing at it runs the model card's usage snippet (`from_pretrained("org/name")`,
`pipeline(...)`, remote code) and compares the weights it got with the original.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
import yaml
from huggingface_hub import HfApi

from openmind_hf.building.inference import QUANTO_WEIGHTS_FILE
from openmind_hf.cli import main
from openmind_hf.export.hub import CheckpointFilesError, checkpoint_files, plan_push, push_checkpoint
from openmind_hf.export.model_card import build_model_card, count_parameters, extract_python_snippet
from openmind_hf.export.quantize import quantize_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"
CODE_FILES = {"configuration_openmind.py", "modeling_openmind.py", "generation_openmind.py", "processing_openmind.py"}
TRAINING_SUMMARY = {
    "stages": [
        {"stage": "pretrain", "datasets": ["laion-subset"], "epochs": 1, "global_step": 120, "learning_rate": 3e-5},
        {"stage": "sft", "datasets": ["llava-instruct", "gsm8k"], "epochs": 2.0, "final_loss": 0.8123},
    ]
}
BENCHMARKS = {
    "model": "x",
    "tasks": {
        "gsm8k": {"metrics": {"accuracy": 0.25}, "num_samples": 8},
        "coco_caption": {"metrics": {"cider": 0.5, "bleu4": 0.125}, "num_samples": 4},
    },
    "created": "2026-11-29T00:00:00+00:00",
}


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny preset plus what a training run leaves beside it (a summary, and files that must NOT be pushed)."""
    path = tmp_path_factory.mktemp("hub-ckpt") / "ckpt"
    shutil.copytree(tiny_checkpoint, path)
    (path / "training_summary.json").write_text(json.dumps(TRAINING_SUMMARY))
    (path / "trainer_state.json").write_text(json.dumps({"global_step": 1, "log_history": []}))
    (path / "training_args.bin").write_bytes(b"pickle")
    (path / "optimizer.pt").write_bytes(b"pickle")
    (path / "README.md").write_text("stale card")
    (path / "checkpoint-10").mkdir()
    (path / "checkpoint-10" / "model.safetensors").write_bytes(b"x")
    return path


def test_checkpoint_files_are_exactly_what_a_hub_user_needs(checkpoint):
    files = set(checkpoint_files(checkpoint))
    assert CODE_FILES <= files  # remote code: every auto_map module and the modules it imports
    assert {"model.safetensors", "config.json", "generation_config.json"} <= files
    assert {"processor_config.json", "tokenizer_config.json", "tokenizer.json", "chat_template.jinja"} <= files
    assert "training_summary.json" in files
    assert not files & {"training_args.bin", "optimizer.pt", "trainer_state.json", "README.md"}
    assert not any("/" in f for f in files)  # checkpoint-*/ subfolders stay home


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("no_code", "lacks modeling_openmind.py"),
        ("no_import", "lacks generation_openmind.py"),
        ("no_auto_map", "has no `auto_map`"),
        ("no_tokenizer_config", "lacks tokenizer_config.json"),
        ("pickle_weights", "has pickle weights"),
    ],
)
def test_incomplete_checkpoints_fail_with_what_to_do(checkpoint, tmp_path, breakage, message):
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    if breakage == "no_code":
        (broken / "modeling_openmind.py").unlink()
    elif breakage == "no_import":  # imported by modeling_openmind.py, named by no auto_map
        (broken / "generation_openmind.py").unlink()
    elif breakage == "no_auto_map":
        config = json.loads((broken / "config.json").read_text())
        del config["auto_map"]
        (broken / "config.json").write_text(json.dumps(config))
    elif breakage == "no_tokenizer_config":
        (broken / "tokenizer_config.json").unlink()
    else:
        (broken / "model.safetensors").rename(broken / "pytorch_model.bin")
    with pytest.raises(CheckpointFilesError, match=message):
        checkpoint_files(broken)


def test_model_card(checkpoint):
    from transformers import AutoConfig, AutoModelForImageTextToText

    card = build_model_card(checkpoint, "openmind-test/tiny-chat", benchmarks=BENCHMARKS)
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["pipeline_tag"] == "image-text-to-text" and meta["library_name"] == "transformers"
    assert "custom_code" in meta["tags"]
    assert meta["datasets"] == ["laion-subset", "llava-instruct", "gsm8k"]
    for expected in ("| vision tower | siglip_vision_model |", "| audio tower | whisper encoder |", "| qwen2 |"):
        assert expected in card
    assert "| pretrain | laion-subset | - | 1 | 120 | 3e-05 | - |" in card
    assert "| sft | llava-instruct, gsm8k | - | 2 | - | - | 0.8123 |" in card
    assert "| gsm8k | accuracy | 0.2500 | 8 |" in card and "| coco_caption | cider | 0.5000 | 4 |" in card
    snippet = extract_python_snippet(card)
    assert 'from_pretrained("openmind-test/tiny-chat", trust_remote_code=True)' in snippet
    assert 'pipeline("image-text-to-text", model="openmind-test/tiny-chat"' in snippet
    # Parameter counts come from the config; they must equal the real model's (tied weights once).
    config = AutoConfig.from_pretrained(checkpoint)
    model = AutoModelForImageTextToText.from_pretrained(checkpoint)
    assert sum(count_parameters(config).values()) == sum(p.numel() for p in model.parameters())


def test_model_card_from_trainer_state_only(tiny_checkpoint, tmp_path):
    shutil.copytree(tiny_checkpoint, tmp_path / "c")
    state = {"global_step": 50, "epoch": 3.0, "log_history": [{"loss": 2.5}, {"loss": 1.25}, {"eval_loss": 9.0}]}
    (tmp_path / "c" / "trainer_state.json").write_text(json.dumps(state))
    card = build_model_card(tmp_path / "c", "o/n")
    assert "From `trainer_state.json`" in card and "| trainer | - | - | 3 | 50 | - | 1.25 |" in card
    assert "## Evaluation" not in card  # no report given


def test_push_dry_run_builds_the_exact_commit(checkpoint, tmp_path, capsys):
    card_path = tmp_path / "card.md"
    argv = ["push", "--model", str(checkpoint), "--repo-id", "openmind-test/tiny-chat", "--private", "--dry-run"]
    assert main([*argv, "--endpoint", "http://127.0.0.1:9", "--save-card", str(card_path)]) == 0
    printed = capsys.readouterr().out
    assert "dry run: nothing was sent." in printed and "endpoint: http://127.0.0.1:9" in printed

    plan = push_checkpoint(checkpoint, "openmind-test/tiny-chat", private=True, dry_run=True)
    assert plan.commit_url is None
    assert plan.create_repo_kwargs == {
        "repo_id": "openmind-test/tiny-chat",
        "private": True,
        "repo_type": "model",
        "exist_ok": True,
    }
    operations = plan.create_commit_kwargs["operations"]
    assert [op.path_in_repo for op in operations] == [*checkpoint_files(checkpoint), "README.md"]
    for op in operations[:-1]:  # each upload is the file's bytes: the sha256 the Hub will store
        data = (checkpoint / op.path_in_repo).read_bytes()
        assert op.upload_info.sha256 == hashlib.sha256(data).digest() and op.upload_info.size == len(data)
    assert operations[-1].path_or_fileobj == plan.card.encode() == card_path.read_bytes()
    # The arguments fit huggingface_hub's real signatures (a renamed parameter would fail here, not on upload).
    api = HfApi(endpoint="http://127.0.0.1:9")
    inspect.signature(api.create_repo).bind(**plan.create_repo_kwargs)
    inspect.signature(api.create_commit).bind(**plan.create_commit_kwargs)
    with pytest.raises(ValueError, match="org/name"):
        plan_push(checkpoint, "no-slash")


# ---------------------------------------------------------------------------------------------------------------
# Real pull through olah


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=OpenMind Tests", "-c", "user.email=tests@openmind.invalid", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit_operations(operations, repo: Path) -> str:
    """Writes the push plan's files into a new git repo (safetensors through git-lfs, as on the Hub); returns the sha."""
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "lfs", "install", "--local")
    _git(repo, "lfs", "track", "*.safetensors")
    for op in operations:
        data = op.path_or_fileobj
        (repo / op.path_in_repo).write_bytes(data if isinstance(data, bytes) else Path(data).read_bytes())
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "OpenMind push plan")
    return _git(repo, "rev-parse", "HEAD")


def record_branch(repos_path: Path, repo_id: str, sha: str) -> None:
    """olah 0.5 (offline) resolves a branch name only through its cache, also for local mirrors: without a record, a
    file missing at `main` (transformers probes several) is answered 401 RepoNotFound instead of 404, which
    transformers treats as fatal. Online, olah records `main -> sha` itself on first use; we write the same record
    with olah's own helpers."""
    from olah.utils.cache_utils import write_cache_request
    from olah.utils.repo_utils import get_resolved_commit_save_path

    org, name = repo_id.split("/")
    path = get_resolved_commit_save_path(str(repos_path), "models", org, name, "main")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    asyncio.run(write_cache_request(path, 200, {}, sha.encode("ascii")))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def olah_server(tmp_path_factory):
    """olah on 127.0.0.1 in offline mode, serving git repos under `mirrors/models/ORG/NAME`."""
    if shutil.which("git-lfs") is None:
        pytest.skip("git-lfs is not installed (Debian: apt-get install -y git-lfs); the Hub stores weights in LFS")
    pytest.importorskip("olah", reason="olah (Hub-compatible mirror server) is not installed: pip install olah")
    root = tmp_path_factory.mktemp("olah")
    port = _free_port()
    mirrors, repos = root / "mirrors", root / "repos"
    mirrors.mkdir()
    config = root / "olah.toml"
    config.write_text(
        textwrap.dedent(f"""\
        [basic]
        host = "127.0.0.1"
        port = {port}
        mirror-netloc = "127.0.0.1:{port}"
        mirror-lfs-netloc = "127.0.0.1:{port}"
        repos-path = "{repos}"
        mirrors-path = ["{mirrors}"]
        [accessibility]
        offline = true
        """)
    )
    log = open(root / "olah.log", "w")  # noqa: SIM115 (closed at teardown)
    command = [sys.executable, "-m", "olah.server", "-c", str(config), "--log-path", str(root / "logs")]
    server = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/", timeout=1)
            break
        except httpx.TransportError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"olah did not start: {(root / 'olah.log').read_text()[-2000:]}")
            time.sleep(0.3)
    yield {"url": url, "mirrors": mirrors, "repos": repos, "log": root / "olah.log"}
    server.terminate()
    server.wait(timeout=30)
    log.close()


def publish_to_olah(server, checkpoint: Path, repo_id: str):
    """The push plan, committed into olah's mirror folder as `repo_id`. Returns the plan."""
    plan = plan_push(checkpoint, repo_id)
    repo = server["mirrors"] / "models" / repo_id
    sha = commit_operations(plan.create_commit_kwargs["operations"], repo)
    pointer = _git(
        repo, "cat-file", "-p", "HEAD:" + plan.files[[f.endswith(".safetensors") for f in plan.files].index(True)]
    )
    assert pointer.startswith("version https://git-lfs"), "weights must be committed through LFS"
    record_branch(server["repos"], repo_id, sha)
    return plan, sha


PULL_SCRIPT = """
import sys, torch
from safetensors.torch import load_file
snippet, original_weights, quanto = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3] == "1"
scope = {}
exec(compile(snippet, "model card snippet", "exec"), scope)
model, pipe = scope["model"], scope["pipe"]
if quanto:
    from optimum.quanto import QModuleMixin
    assert any(isinstance(m, QModuleMixin) for m in model.modules()), "not quantized"
else:
    # Remote code from the repo, not an installed package:
    assert "openmind_hf" not in sys.modules, "openmind_hf was imported"
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    assert type(pipe.model).__module__.startswith("transformers_modules."), type(pipe.model).__module__
state = model.state_dict()
for key, value in load_file(original_weights).items():
    assert torch.equal(state[key], value), key
print("PULL-OK", type(model).__name__, type(pipe).__name__)
"""


def run_card_snippet(server, plan, tmp_path: Path, weights: Path, quanto: bool) -> tuple[str, Path]:
    """Runs the card's snippet in a fresh process whose HF_ENDPOINT is the olah server (read at import time)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "snippet.py").write_text(extract_python_snippet(plan.card))
    (tmp_path / "pull.py").write_text(PULL_SCRIPT)
    drop = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "PYTHONPATH", "HF_ENDPOINT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(HF_ENDPOINT=server["url"], HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    if quanto:  # quanto weights need OpenMind's loader (the card says so); plain checkpoints must not
        env["PYTHONPATH"] = str(SRC)
    command = [sys.executable, str(tmp_path / "pull.py"), str(tmp_path / "snippet.py"), str(weights), str(int(quanto))]
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout, tmp_path / "hf" / "hub"


def test_pull_by_repo_id_through_olah(olah_server, checkpoint, tmp_path):
    repo_id = "openmind-test/tiny-chat"
    plan, sha = publish_to_olah(olah_server, checkpoint, repo_id)
    stdout, hub_cache = run_card_snippet(olah_server, plan, tmp_path, checkpoint / "model.safetensors", quanto=False)
    assert "PULL-OK OpenMindForConditionalGeneration ImageTextToTextPipeline" in stdout
    downloaded = {p.name for p in (hub_cache / "models--openmind-test--tiny-chat" / "snapshots" / sha).iterdir()}
    assert {"model.safetensors", "config.json", "processor_config.json"} | CODE_FILES <= downloaded
    assert downloaded <= set(plan.files)
    assert f"GET /{repo_id}/resolve/main/model.safetensors" in olah_server["log"].read_text()


def test_pull_quantized_checkpoint_through_olah(olah_server, checkpoint, tmp_path):
    int4 = tmp_path / "int4"
    quantize_checkpoint(checkpoint, int4, bits=4, backend="quanto", probe_new_tokens=0)
    plan, _ = publish_to_olah(olah_server, int4, "openmind-test/tiny-chat-int4")
    assert QUANTO_WEIGHTS_FILE in plan.files and "## Quantization" in plan.card
    stdout, _ = run_card_snippet(olah_server, plan, tmp_path / "pull", int4 / QUANTO_WEIGHTS_FILE, quanto=True)
    assert "PULL-OK OpenMindForConditionalGeneration" in stdout
