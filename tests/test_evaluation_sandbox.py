"""The code sandbox contains hostile programs: loops, memory bombs, stdin, sleeps, shells, file deletion, network,
early exits. Each one must fail cleanly, and the files outside the sandbox must survive."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import sys
import tempfile
import threading
import time

import pytest

from openmind_hf.evaluation.sandbox import SandboxLimits, run_many, run_python

LIMITS = SandboxLimits(timeout=3.0, cpu_seconds=1, memory_bytes=512 << 20, file_bytes=1 << 20)


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
    "dir_fd trick": (
        "import os\nfd = os.open('{victim}', os.O_RDONLY)\nos.remove('sentinel.txt', dir_fd=fd)",
        "outside",
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
