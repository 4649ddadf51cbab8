"""The README shows only commands that CI runs, so docs and code cannot drift.

Every command line of every ```bash block of README.md (backslash continuations joined, comments dropped) is either
run for real, in README order, in a throw-away folder that plays the fresh clone (`recipes/` and `scripts/` linked
in, `outputs/` and `data/` written there), with its check of what the README says it does; or listed in
`COVERED_ELSEWHERE` with the reason it cannot run here and the test that covers it. A README command in neither
table fails the test, and so does a table entry the README no longer shows.

Only speed flags are added to what the README shows (`SPEED_FLAGS`: fewer steps, shorter generations, a free port);
the flags the README shows come first, so they are what argparse and the recipes see unless a speed flag replaces
them. `openmind ...` and `python recipes/X.py` commands run one after another in ONE helper process through the
same entry points as the console script (`openmind_hf.cli.main`, the recipe's `__main__`), so torch and transformers
load once: a fresh process per command cost ~25 s of start-up on 2 busy cores. Servers (`openmind serve` / `chat`)
run as real processes and are asked over HTTP. Each ```python block runs in its own process, offline; each ```json
block must be records the loaders accept.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PYTHON = sys.executable
BIN = Path(PYTHON).parent

# README command -> (why it does not run here, the test that covers it, a word that test must contain).
COVERED_ELSEWHERE = {
    "make demo": ("minutes of training; runs its own end-to-end check", "tests/test_training_demo.py", "demo.py"),
    "make test": ("this is the test suite itself", "tests/test_readme.py", "make test"),
    "make test-vllm": ("builds a separate vLLM venv (~10 min)", "tests/test_vllm.py", "engine"),
    ".venv-vllm/bin/openmind serve --engine vllm --model DIR --device cpu --dtype float32 --port 8000": (
        "needs the vLLM venv of `make test-vllm`",
        "tests/test_vllm.py",
        "engine",
    ),
    "accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml recipes/sft.py "
    "--config recipes/configs/openmind-7b/sft.yaml": (
        "a GPU and the 7B reference weights; the config itself is loaded in test_accelerate_configs_load",
        "tests/test_recipes.py",
        "single_gpu",
    ),
    "accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml recipes/sft.py "
    "--config recipes/configs/openmind-7b/sft.yaml": (
        "several GPUs; the same DDP path runs on 2 CPU processes (cpu_ddp.yaml)",
        "tests/test_training_ddp.py",
        "multi_gpu",
    ),
    "accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/sft.py "
    "--config recipes/configs/openmind-7b/sft.yaml": (
        "GPUs; ZeRO-2/3 run on CPU processes with zero*_cpu.yaml and match one process",
        "tests/test_training_scaleout_zero.py",
        "zero3",
    ),
    "accelerate launch --config_file recipes/accelerate_configs/multi_node.yaml --machine_rank '$RANK' "
    "--main_process_ip '$HEAD' recipes/sft.py --config recipes/configs/openmind-7b/sft.yaml": (
        "several machines; the config's machine count and launcher fields are checked",
        "tests/test_recipes.py",
        "multi_node",
    ),
    "ACCELERATE_USE_CPU=1 accelerate launch --config_file recipes/accelerate_configs/cpu_ddp.yaml recipes/sft.py --config recipes/configs/tiny/sft.yaml": (
        "2-process launches take minutes; the same launch (ACCELERATE_USE_CPU=1, cpu_ddp.yaml) runs there",
        "tests/test_training_scaleout_ddp.py",
        "cpu_ddp",
    ),
    "ACCELERATE_USE_CPU=1 accelerate launch --config_file recipes/accelerate_configs/multi_node_cpu.yaml "
    "--machine_rank 0 recipes/sft.py --config recipes/configs/tiny/sft.yaml": (
        "two launches that wait for each other; both ranks run there and match one machine",
        "tests/test_training_scaleout_ddp.py",
        "multi_node_cpu",
    ),
    "ACCELERATE_USE_CPU=1 accelerate launch --config_file recipes/accelerate_configs/multi_node_cpu.yaml "
    "--machine_rank 1 recipes/sft.py --config recipes/configs/tiny/sft.yaml": (
        "the second half of the pair above",
        "tests/test_training_scaleout_ddp.py",
        "multi_node_cpu",
    ),
    "accelerate launch --config_file recipes/accelerate_configs/zero3_cpu.yaml recipes/sft.py --config recipes/configs/tiny/sft.yaml --ddp_backend gloo": (
        "2-process DeepSpeed launches take minutes; ZeRO-2/3 on CPU run there and match one process",
        "tests/test_training_scaleout_zero.py",
        "zero3_cpu",
    ),
    "openmind data download --dataset gsm8k --output data/gsm8k": (
        "needs the network; the converters run offline on upstream-format files (--input)",
        "tests/test_data_converters.py",
        "--input",
    ),
    "openmind eval --model CKPT --data DIR --output results/benchmarks.json": (
        "CKPT and DIR are the user's; the CLI runs on a trained checkpoint and task files",
        "tests/test_evaluation_runner.py",
        '"eval"',
    ),
    "openmind eval --model CKPT --data DIR --tasks vqa --prompt-template '{question} Answer in one word.' "
    "--predictions preds.jsonl": (
        "CKPT and DIR are the user's; templates and the predictions file are checked there",
        "tests/test_evaluation_runner.py",
        "prompt_template",
    ),
    "openmind eval --model CKPT --data DIR --tasks gsm8k,math,humaneval --enable-thinking --limit 100": (
        "CKPT and DIR are the user's; every task is scored there",
        "tests/test_evaluation_runner.py",
        "--enable-thinking",
    ),
    "scripts/run_benchmarks.sh --model CKPT --output results/benchmarks.json": (
        "CKPT is the user's; the script runs in test_run_benchmarks_script",
        "tests/test_evaluation_runner.py",
        "run_benchmarks.sh",
    ),
    "openmind chat --endpoint http://127.0.0.1:8000/v1 --api-key-env OPENMIND_API_KEY": (
        "needs `openmind serve` on port 8000, which other tests on this machine may hold",
        "tests/test_chat_cli.py",
        "--endpoint",
    ),
}

# README command -> flags appended for speed or isolation only (later flags win in argparse and the recipes).
QUICK_TRAIN = ["--max_steps", "2", "--per_device_train_batch_size", "2", "--disable_tqdm", "true"]
SPEED_FLAGS = {
    "python recipes/sft.py --config recipes/configs/tiny/sft.yaml --num_train_epochs 6": QUICK_TRAIN,
    "openmind train --stage grpo --config recipes/configs/tiny/grpo.yaml --model_name_or_path outputs/tiny-sft "
    "--tasks reasoning": [*QUICK_TRAIN, "--num_generations", "2", "--max_completion_length", "6"],
    "python recipes/sft.py --config recipes/configs/tiny/sft.yaml --dataset_name my.jsonl --media_root my_media/": [
        *QUICK_TRAIN,
        "--output_dir",
        "outputs/my-sft",
    ],
    "python recipes/dpo.py --config recipes/configs/tiny/dpo.yaml --model_name_or_path outputs/tiny-sft": QUICK_TRAIN,
    "python recipes/sft.py --config recipes/configs/small/sft.yaml --dataset_name my.jsonl --media_root my_media/": [
        *QUICK_TRAIN,
        "--output_dir",
        "outputs/my-small-sft",
    ],
    "openmind data check data/demo/instruct_train.jsonl --stats --preset tiny": ["--stats-samples", "32"],
    "openmind quantize --model outputs/tiny --bits 8 --output outputs/tiny-int8": ["--probe-tokens", "4"],
    "openmind quantize --model outputs/tiny --bits 4 --output outputs/tiny-int4": ["--probe-tokens", "4"],
}


def _check_files(*paths):
    def check(cwd: Path, output: str):
        missing = [p for p in paths if not (cwd / p).exists()]
        assert not missing, f"expected {missing} to exist\n{output[-3000:]}"

    return check


def _check_output(*needles):
    def check(cwd: Path, output: str):
        missing = [n for n in needles if n not in output]
        assert not missing, f"expected {missing} in the output\n{output[-3000:]}"

    return check


def _check_synthetic(cwd: Path, output: str):
    splits = json.loads((cwd / "data/demo/manifest.json").read_text())["splits"]
    counts = (splits["train"]["num_samples"], splits["test"]["num_samples"])
    assert counts == (512, 128), counts  # the README: "512 train / 128 test"


def _check_quantized(folder: str, backend: str, bits: int):
    def check(cwd: Path, output: str):
        report = json.loads((cwd / folder / "openmind_quantization.json").read_text())
        assert (report["backend"], report["bits"]) == (backend, bits), report
        assert report["quantized_weights_bytes"] < report["original_weights_bytes"], report

    return check


def _check_grpo(cwd: Path, output: str):
    summary = json.loads((cwd / "outputs/tiny-grpo/run_summary.json").read_text())
    assert summary["model_name_or_path"] == "outputs/tiny-sft", summary  # the README's chain: GRPO starts from SFT
    assert (cwd / "outputs/tiny-grpo/loss_curve.png").exists()


def _check_dpo(cwd: Path, output: str):
    summary = json.loads((cwd / "outputs/tiny-dpo/run_summary.json").read_text())
    assert summary["model_name_or_path"] == "outputs/tiny-sft", summary
    assert summary["datasets"] == ["data/demo/preference_train.jsonl"], summary  # the pairs the Data section shows
    assert (cwd / "outputs/tiny-dpo/model.safetensors").exists()


# README command -> what it must have done (files it writes, words it prints).
CHECKS = {
    "openmind data synthetic --output data/demo": _check_synthetic,
    "python recipes/sft.py --config recipes/configs/tiny/sft.yaml --num_train_epochs 6": _check_files(
        "outputs/tiny-sft/model.safetensors", "outputs/tiny-sft/loss_curve.png", "outputs/tiny-sft/run_summary.json"
    ),
    "openmind train --stage grpo --config recipes/configs/tiny/grpo.yaml --model_name_or_path outputs/tiny-sft "
    "--tasks reasoning": _check_grpo,
    "python recipes/sft.py --config recipes/configs/tiny/sft.yaml --dataset_name my.jsonl --media_root my_media/": (
        _check_files("outputs/my-sft/model.safetensors")
    ),
    "python recipes/dpo.py --config recipes/configs/tiny/dpo.yaml --model_name_or_path outputs/tiny-sft": _check_dpo,
    "python recipes/sft.py --config recipes/configs/small/sft.yaml --dataset_name my.jsonl --media_root my_media/": (
        _check_files("outputs/my-small-sft/model.safetensors")
    ),
    "openmind data list": _check_output("webvid", "howto100m", "visual-genome", "laion", "cc12m", "math"),
    "openmind data check data/demo/instruct_train.jsonl": _check_output('"usable": 512'),
    "openmind data check data/demo/instruct_train.jsonl --stats --preset tiny": _check_output("[["),
    "openmind eval --list-tasks": _check_output("vqa", "gsm8k", "humaneval", "prompt:"),
    "openmind preset tiny --output outputs/tiny": _check_files(
        "outputs/tiny/config.json", "outputs/tiny/model.safetensors"
    ),
    "openmind quantize --model outputs/tiny --bits 8 --output outputs/tiny-int8": _check_quantized(
        "outputs/tiny-int8", "torchao", 8
    ),
    "openmind quantize --model outputs/tiny --bits 4 --output outputs/tiny-int4": _check_quantized(
        "outputs/tiny-int4", "quanto", 4
    ),
    "openmind push --model outputs/tiny --repo-id your-org/openmind-tiny --dry-run": _check_output(
        "dry run: nothing was sent"
    ),
}

SERVERS = ("openmind serve ", "openmind chat ")


# ------------------------------------------------------------------------------------------------ parsing


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """`(language, body)` of every fenced block, in README order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def bash_commands(body: str) -> list[list[str]]:
    """The argv of each command line of a bash block: continuations joined, comments and blank lines dropped."""
    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        if tokens:
            commands.append(tokens)
    return commands


def key(argv: list[str]) -> str:
    return shlex.join(argv)


def all_commands() -> list[list[str]]:
    return [argv for lang, body in readme_blocks(README.read_text()) if lang == "bash" for argv in bash_commands(body)]


# ------------------------------------------------------------------------------------------------ running

RUNNER = r"""
import json, os, runpy, sys, traceback
os.environ.setdefault("OMP_NUM_THREADS", "1")
from openmind_hf.cli import main as openmind
for line in sys.stdin:
    job = json.loads(line)
    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    sys.stdout.flush(); sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(fd, 1); os.dup2(fd, 2)
    rc = 0
    try:
        argv = job["argv"]
        if argv[0] == "openmind":
            rc = openmind(argv[1:]) or 0
        else:  # python recipes/X.py ...: the script's own __main__, as `python` would run it
            sys.argv = argv[1:]
            runpy.run_path(argv[1], run_name="__main__")
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        rc = 1
    sys.stdout.flush(); sys.stderr.flush()
    os.dup2(saved[0], 1); os.dup2(saved[1], 2); os.close(fd)
    print(json.dumps({"rc": rc}), flush=True)
"""


class CommandRunner:
    """One Python process that runs `openmind` / `python recipes/X.py` commands one after another in `cwd`."""

    def __init__(self, cwd: Path, env: dict):
        self.cwd = cwd
        self.proc = subprocess.Popen(
            [PYTHON, "-c", RUNNER], cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def run(self, argv: list[str], log: Path) -> tuple[int, str]:
        self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        output = log.read_text(errors="replace") if log.exists() else ""
        assert reply, f"the runner died on {key(argv)!r}\n{output[-3000:]}"
        return json.loads(reply)["rc"], output

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"server exited with {proc.returncode}\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} did not answer in {timeout} s\n{log.read_text()[-3000:]}")


def run_server(argv: list[str], cwd: Path, env: dict) -> None:
    """Start `openmind serve`/`chat` as the README shows it (on a free port), check it answers, stop it."""
    port = free_port()
    log = cwd / f"server-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN / "openmind"), *argv[1:], "--port", str(port)], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        if argv[1] == "serve":
            wait_for(f"http://127.0.0.1:{port}/health", proc, log)
            body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {env['OPENMIND_API_KEY']}", "Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=120) as r:
                answer = json.load(r)
            assert answer["choices"][0]["message"]["role"] == "assistant", answer
            anonymous = urllib.request.Request(
                request.full_url, data=request.data, headers={"Content-Type": "application/json"}
            )
            with pytest.raises(urllib.error.HTTPError) as refused:  # "every route but /health needs the API key"
                urllib.request.urlopen(anonymous, timeout=60)
            assert refused.value.code == 401
        else:
            wait_for(f"http://127.0.0.1:{port}/", proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_clone(tmp: Path) -> Path:
    """A folder that stands in for a fresh clone: the repository's recipes and scripts, nothing generated."""
    clone = tmp / "clone"
    clone.mkdir()
    for name in ("recipes", "scripts"):
        (clone / name).symlink_to(REPO / name)
    return clone


def write_own_jsonl(clone: Path) -> None:
    """The user's own data that `--dataset_name my.jsonl --media_root my_media/` names: 16 demo records, media copied."""
    import shutil

    records = [json.loads(line) for line in (clone / "data/demo/instruct_train.jsonl").read_text().splitlines()[:16]]
    for record in records:
        for field in ("image", "audio"):
            if field in record:
                target = clone / "my_media" / record[field]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(clone / "data/demo" / record[field], target)
    (clone / "my.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def clean_env(tmp: Path) -> dict:
    env = dict(os.environ)
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # `python` and `openmind` are the project's
        HF_HOME=str(tmp / "hf"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="offline",
        OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", GRADIO_ANALYTICS_ENABLED="False",
    )  # fmt: skip
    return env


# ------------------------------------------------------------------------------------------------ tests


def test_every_readme_command_is_run_or_covered_by_a_named_test():
    commands = {key(argv) for argv in all_commands()}
    runnable = {k for k in commands if k in CHECKS or k.startswith(SERVERS) or k.startswith("export ")}
    unaccounted = sorted(commands - runnable - set(COVERED_ELSEWHERE))
    assert not unaccounted, (
        "README commands neither run by tests/test_readme.py nor listed in COVERED_ELSEWHERE (add a check or the "
        f"test that covers them): {unaccounted}"
    )
    stale = sorted((set(COVERED_ELSEWHERE) | set(CHECKS) | set(SPEED_FLAGS)) - commands)
    assert not stale, f"tests/test_readme.py lists commands the README no longer shows: {stale}"
    for command, (reason, test_file, needle) in COVERED_ELSEWHERE.items():
        assert reason and (REPO / test_file).is_file(), f"{command!r}: covering test {test_file} does not exist"
        assert needle in (REPO / test_file).read_text(), f"{command!r}: {test_file} no longer mentions {needle!r}"


def test_readme_json_examples_are_records_the_loaders_accept(tmp_path):
    from openmind_hf.data.preference import PreferenceDataset
    from openmind_hf.data.synthetic import write_synthetic_dataset

    blocks = [body for lang, body in readme_blocks(README.read_text()) if lang == "json"]
    assert blocks, "the README's Data section shows a preference record"
    data = tmp_path / "data" / "demo"
    write_synthetic_dataset(data, seed=0, num_train=8, num_test=4)  # the example's media paths are the demo set's
    for body in blocks:
        lines = [line for line in body.splitlines() if line.strip()]
        path = tmp_path / "pairs.jsonl"
        path.write_text("\n".join(lines) + "\n")
        pairs = PreferenceDataset(str(path), media_root=str(data))
        assert len(pairs) == len(lines)
        for i in range(len(pairs)):
            pair = pairs[i]
            assert pair["chosen"] and pair["rejected"] and (pair["images"] or pair["audios"]), pair


@pytest.mark.slow  # 16 commands, torch imported once: ~80 s idle-ish, ~4 min on a busy 2-core box
@pytest.mark.timeout(900)
def test_readme_bash_commands_run_and_do_what_they_say(tmp_path):
    clone = make_clone(tmp_path)
    env = clean_env(tmp_path)
    runner = CommandRunner(clone, env)
    ran = []
    try:
        for i, argv in enumerate(all_commands()):
            command = key(argv)
            if command in COVERED_ELSEWHERE:
                continue
            start = time.time()
            if argv[0] == "export":  # e.g. the API key: evaluated by bash, kept for the commands after it
                name = argv[1].split("=", 1)[0]
                line = next(ln for ln in README.read_text().splitlines() if ln.startswith(f"export {name}="))
                line = line.split("  #")[0]
                value = subprocess.run(["bash", "-c", f'{line}; printf %s "${name}"'], cwd=clone, env=env,
                                       capture_output=True, text=True, check=True).stdout  # fmt: skip
                assert value, f"{line!r} set {name} to nothing"
                env[name] = value
            elif command.startswith(SERVERS):
                run_server(argv, clone, env)
            else:
                if (
                    command.endswith("--dataset_name my.jsonl --media_root my_media/")
                    and not (clone / "my.jsonl").exists()
                ):
                    write_own_jsonl(clone)
                rc, output = runner.run([*argv, *SPEED_FLAGS.get(command, [])], clone / f"command-{i}.log")
                assert rc == 0, f"README command {command!r} exited with {rc}\n{output[-3000:]}"
                CHECKS[command](clone, output)
            ran.append((round(time.time() - start, 1), command))
    finally:
        runner.close()
    print("\n".join(f"{seconds:6.1f} s  {command}" for seconds, command in ran))  # shown with -s: where time goes
    assert len(ran) >= len(CHECKS)


@pytest.mark.timeout(600)
def test_readme_python_snippets_run_offline(tmp_path):
    snippets = [body for lang, body in readme_blocks(README.read_text()) if lang == "python"]
    assert snippets
    env = clean_env(tmp_path)
    for i, code in enumerate(snippets):
        result = subprocess.run([PYTHON, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=540)  # fmt: skip
        assert result.returncode == 0, f"README python block {i} failed:\n{code}\n{result.stderr[-3000:]}"
