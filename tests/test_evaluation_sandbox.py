"""The code sandbox contains hostile programs: loops, memory bombs, stdin, sleeps, shells, file deletion, network,
early exits. Each one must fail cleanly, and the files outside the sandbox must survive."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from openmind_hf.evaluation.sandbox import (
    SandboxLimits,
    SandboxUnavailableError,
    boundary_status,
    run_many,
    run_python,
)

# Generous wall time: the CPU limit (1 s) must fire first even when the shared machine is busy.
LIMITS = SandboxLimits(timeout=6.0, cpu_seconds=1, memory_bytes=512 << 20, file_bytes=1 << 20)


@pytest.fixture
def host(tmp_path):
    """Files the programs attack, a place for the sandboxes' temp dirs, and a TCP server on 127.0.0.1."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "sentinel.txt").write_text("keep me")
    (victim / "sub").mkdir()
    (victim / "sub" / "data.txt").write_text("keep me too")
    sandboxes = tmp_path / "sandboxes"
    sandboxes.mkdir()

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    connections = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connections.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield {"victim": victim, "sentinel": victim / "sentinel.txt", "sandboxes": sandboxes,
           "port": server.getsockname()[1], "connections": connections}  # fmt: skip
    stop.set()
    thread.join()
    server.close()
    # The host is untouched and every sandbox cleaned up after itself.
    assert (victim / "sentinel.txt").read_text() == "keep me"
    assert (victim / "sub" / "data.txt").read_text() == "keep me too"
    assert sorted(p.name for p in victim.iterdir()) == ["sentinel.txt", "sub"]
    assert list(sandboxes.iterdir()) == []
    assert connections == []


HOSTILE = {
    "infinite loop": ("while True:\n    pass", "SIGXCPU"),
    "memory bomb (one allocation)": ("x = bytearray(8 << 30)", "MemoryError"),
    "memory bomb (growing)": ("x = []\nwhile True:\n    x.append(bytearray(16 << 20))", "MemoryError"),
    "stdin read": ("input('enter a number')", "EOFError"),
    "os.system rm -rf": ("import os\nos.system('rm -rf {victim}')", "os.system is not allowed"),
    "subprocess rm -rf": ("import subprocess\nsubprocess.run(['rm', '-rf', '{victim}'])", "_posixsubprocess"),
    "shutil.rmtree": ("import shutil\nshutil.rmtree('{victim}')", "outside the working directory"),
    "os.remove": ("import os\nos.remove('{sentinel}')", "outside the working directory"),
    "pathlib unlink": ("import pathlib\npathlib.Path('{sentinel}').unlink()", "outside the working directory"),
    "overwrite": ("open('{sentinel}', 'w').write('pwned')", "writing outside"),
    "append": ("open('{sentinel}', 'a').write('pwned')", "writing outside"),
    "os.open for writing": ("import os\nos.open('{sentinel}', os.O_WRONLY | os.O_TRUNC)", "writing outside"),
    "relative path escape": ("open('../../../../../../../../{sentinel}', 'w')", "writing outside"),
    "rename out": ("import os\nos.rename('{sentinel}', 'stolen.txt')", "outside the working directory"),
    "dir_fd trick": (  # the victim dir does not even exist inside the boundary
        "import os\nfd = os.open('{victim}', os.O_RDONLY)\nos.remove('sentinel.txt', dir_fd=fd)",
        "No such file or directory",
    ),
    "symlink trick": ("import os\nos.symlink('{sentinel}', 'link')\nopen('link', 'w').write('pwned')", "os.symlink"),
    "chmod": ("import os\nos.chmod('{sentinel}', 0o000)", "outside the working directory"),
    "fork": ("import os\nwhile True:\n    os.fork()", "os.fork is not allowed"),
    "kill the parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", "os.kill is not allowed"),
    "network": ("import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)", "socket"),
    "ctypes": ("import ctypes\nctypes.CDLL(None).system(b'rm -rf {victim}')", "ctypes"),
    "raise the limits": ("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (100, 100))", "setrlimit"),
    "huge file": ("open('big.bin', 'wb').write(b'x' * (8 << 20))", "File too large"),
    "huge output": ("while True:\n    print('x' * 100000)", "File too large"),
    "os._exit(0) before the tests": ("import os\nos._exit(0)\nassert False", "before the end of the program"),
    "sys.exit(0) before the tests": ("import sys\nsys.exit(0)\nassert False", "before the end of the program"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_fails_cleanly_and_host_survives(name, host):
    template, reason = HOSTILE[name]
    source = template.format(victim=host["victim"], sentinel=host["sentinel"], port=host["port"])
    result = run_python(source, LIMITS, tmp_root=host["sandboxes"])
    assert result.status == "failed", result
    assert reason in result.reason, result
    assert result.seconds < LIMITS.timeout + 2


def test_sleep_times_out_and_is_killed(host):
    start = time.monotonic()
    result = run_python("import time\ntime.sleep(60)", LIMITS, tmp_root=host["sandboxes"])
    assert result.status == "timed out" and not result.passed
    assert time.monotonic() - start < LIMITS.timeout + 2


def test_well_behaved_program_passes_and_may_use_its_working_directory(host):
    source = (
        "import os, tempfile, json\n"
        "with open('notes.txt', 'w') as f:\n    f.write('ok')\n"
        "os.mkdir('d')\nos.rename('notes.txt', 'd/notes.txt')\n"
        "with tempfile.NamedTemporaryFile('w', delete=False) as f:\n    f.write('tmp')\n"
        "print(json.dumps(sorted(os.listdir('.'))))\n"
    )
    result = run_python(source, LIMITS, tmp_root=host["sandboxes"])
    assert result.passed, result
    assert result.stdout.splitlines()[0].startswith('["d"')


def test_failures_report_the_exception(host):
    result = run_python("def f():\n    return 2\nassert f() == 1, 'wrong answer'", LIMITS, tmp_root=host["sandboxes"])
    assert result.status == "failed"
    assert result.reason == "AssertionError: wrong answer"


def test_run_many_keeps_order_and_runs_in_parallel(host):
    sources = [f"import time\ntime.sleep(1)\nprint({i})" for i in range(4)]
    start = time.monotonic()
    results = run_many(sources, LIMITS, workers=2, tmp_root=host["sandboxes"])
    elapsed = time.monotonic() - start
    assert [r.stdout for r in results] == ["0", "1", "2", "3"]
    assert all(r.passed for r in results)
    assert elapsed < 3.8  # 4 one-second sleeps on 2 workers: ~2 s, never the serial 4 s


def _nobody_can_run(python: str) -> bool:
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return False
    path = os.path.realpath(python)
    # Every directory on the way must be searchable and the binary executable by "other".
    parts = [path] + [os.path.dirname(path)]
    while parts[-1] != "/":
        parts.append(os.path.dirname(parts[-1]))
    return all(os.stat(p).st_mode & 0o001 for p in parts)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_runs_as_an_unprivileged_user_when_asked():
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    if not _nobody_can_run(python):
        pytest.skip(f"user 'nobody' cannot execute {python}")
    # The sandbox's temp dir must be reachable by that user: pytest's tmp_path (0700) is not.
    sandboxes = tempfile.mkdtemp(prefix="openmind-sandbox-test-")
    try:
        os.chmod(sandboxes, 0o711)
        result = run_python("import os\nprint(os.getuid())", LIMITS, python=python, user="nobody", tmp_root=sandboxes)
        assert result.passed, result
        assert result.stdout == str(pwd.getpwnam("nobody").pw_uid)
        assert os.listdir(sandboxes) == []
    finally:
        shutil.rmtree(sandboxes)


# --- The OS boundary (bubblewrap). The audit hook lives in the program's own process, so a program can switch it
# off: this walk empties the hook's closure cells (its deny lists and path check). Every escape below runs both with
# the hook intact and with it emptied; only the boundary may be what stops it.
HOOK_BYPASS = """
import gc
for _f in gc.get_objects():
    if type(_f).__name__ == "function" and _f.__name__ == "hook" and _f.__closure__:
        for _c in _f.__closure__:
            _v = _c.cell_contents
            if type(_v) is frozenset:
                _c.cell_contents = frozenset()
            elif type(_v) is tuple:
                _c.cell_contents = ("\\0",)
            elif type(_v) is dict:
                _c.cell_contents = {}
            elif getattr(_v, "__name__", "") == "inside":
                _c.cell_contents = lambda *a, **k: True
"""

ESCAPES = {
    "os.system": "import os\nassert os.system('touch {victim}/pwned {marker} && rm -rf {victim}') == 0",
    "mkfifo outside": "import os\nos.mkfifo('{victim}/fifo')\nos.mkfifo('{marker}')",
    "mknod outside": "import os, stat\nos.mknod('{victim}/node', stat.S_IFREG | 0o600)",
    "sqlite3 outside": "import sqlite3\nsqlite3.connect('{victim}/db.sqlite').execute('create table t (x)')",
    "write outside": "open('{marker}', 'w').write('x')\nopen('{victim}/new.txt', 'w').write('x')",
    "ctypes system": "import ctypes\nassert ctypes.CDLL(None).system(b'touch {victim}/pwned {marker}') == 0",
    "network": "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')",
    "other processes' environ": (
        "import os\nfound = []\nfor pid in ['{secret_pid}', str(os.getppid())] + os.listdir('/proc'):\n"
        "    try:\n        found.append(open('/proc/' + pid + '/environ', 'rb').read())\n"
        "    except OSError:\n        pass\nprint(found)\nraise Exception(repr(found))"
    ),
    "own environment": "import os\nprint(dict(os.environ))\nraise Exception(repr(dict(os.environ)))",
    "/etc/shadow": "print(open('/etc/shadow').read())\nraise Exception(open('/etc/shadow').read())",
    "see the host's processes": "import os\nos.kill({host_pid}, 0)\nprint('VISIBLE')\nraise Exception('VISIBLE')",
}


@pytest.fixture
def secret_process(monkeypatch):
    """A host process with a secret in its environment, and the same secret in this process's environment."""
    secret = "openmind-secret-" + os.urandom(8).hex()
    monkeypatch.setenv("OPENMIND_TEST_SECRET", secret)
    proc = subprocess.Popen(["sleep", "60"], env={"OPENMIND_TEST_SECRET": secret})
    yield secret, proc.pid
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("bypass", [False, True], ids=["hook intact", "hook emptied"])
@pytest.mark.parametrize("name", list(ESCAPES))
def test_escape_is_contained_by_the_boundary(name, bypass, host, secret_process, tmp_path):
    secret, secret_pid = secret_process
    marker = f"/tmp/openmind-escape-{os.urandom(6).hex()}"
    source = ESCAPES[name].format(victim=host["victim"], port=host["port"], marker=marker,
                                  secret_pid=secret_pid, host_pid=os.getpid())  # fmt: skip
    result = run_python((HOOK_BYPASS if bypass else "") + source, LIMITS, tmp_root=host["sandboxes"])
    assert result.status == "failed", result  # every escape program ends in an error, whichever layer stopped it
    text = result.stdout + result.stderr + result.reason
    assert secret not in text
    assert "VISIBLE" not in text
    assert not os.path.lexists(marker)
    if os.path.exists("/etc/shadow"):
        assert open("/etc/shadow").read().splitlines()[0] not in text
    # The host fixture checks the victim dir, the listener (no connection) and that the sandbox dir was removed.


def test_the_hook_bypass_really_disables_the_hook(host):
    # Without this, the "hook emptied" escapes above would prove nothing: os.system must now run (inside).
    result = run_python(HOOK_BYPASS + "import os\nprint(os.system('echo ran > ran.txt'), open('ran.txt').read())",
                        LIMITS, tmp_root=host["sandboxes"])  # fmt: skip
    assert result.passed, result
    assert result.stdout.split() == ["0", "ran"]


def _sandbox_processes(path) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if str(path).encode() in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


def test_fork_bomb_dies_with_the_sandbox(host):
    # As root, RLIMIT_NPROC does not bind (the kernel exempts uid 0); the PID namespace does: at the deadline its
    # init is killed and every process in it with it.
    limits = SandboxLimits(timeout=1.5, cpu_seconds=1)
    result = run_python(HOOK_BYPASS + "import os\nwhile True:\n    os.fork()", limits, tmp_root=host["sandboxes"])
    assert not result.passed
    deadline = time.monotonic() + 10  # the kernel may take a moment to reap thousands of forks
    while _sandbox_processes(host["sandboxes"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _sandbox_processes(host["sandboxes"]) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_fork_bomb_stops_at_the_process_limit_as_an_unprivileged_user():
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    if not _nobody_can_run(python):
        pytest.skip(f"user 'nobody' cannot execute {python}")
    sandboxes = tempfile.mkdtemp(prefix="openmind-sandbox-test-")
    try:
        os.chmod(sandboxes, 0o711)
        limits = SandboxLimits(timeout=5.0, cpu_seconds=2, max_processes=8)
        source = (
            HOOK_BYPASS + "import os\ntry:\n    while True:\n        os.fork()\nexcept OSError as e:\n    print(e)"
        )
        result = run_python(source, limits, python=python, user="nobody", tmp_root=sandboxes)
        assert "Resource temporarily unavailable" in result.stdout, result
        assert result.seconds < 4
        time.sleep(0.5)
        assert _sandbox_processes(sandboxes) == []
    finally:
        shutil.rmtree(sandboxes)


def test_no_boundary_means_a_clear_refusal(monkeypatch, tmp_path):
    # bwrap not on PATH: nothing runs unless the caller opts in.
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailableError, match="bubblewrap .* not on PATH.*--allow-unsandboxed-code"):
        run_python("print(1)", LIMITS)
    assert boundary_status() == (False, boundary_status()[1])
    result = run_python("print(1)", LIMITS, allow_unsandboxed=True)
    assert result.passed and result.stdout == "1"


def test_openmind_eval_refuses_code_tasks_without_a_boundary(tmp_path):
    # Refused before any model is loaded (the model path does not even exist), with what to do about it.
    env = {**os.environ, "PATH": str(tmp_path)}  # no bwrap on PATH
    command = [sys.executable, "-m", "openmind_hf.cli", "eval", "--model", str(tmp_path / "no-model")]
    command += ["--data", str(tmp_path), "--tasks", "humaneval"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "no sandbox boundary here" in done.stderr and "--allow-unsandboxed-code" in done.stderr, done.stderr
    assert "bubblewrap (`bwrap`) is not on PATH" in done.stderr
