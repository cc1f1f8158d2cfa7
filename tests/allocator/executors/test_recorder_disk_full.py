"""The run recorder on a full disk (issue 14, item 9): a record that does not fit is cut
back, the error says what happened and what to do, and the file stays a valid log that
can be written on once there is room.

The disks are real: ``/dev/full`` (every write fails with ENOSPC), a 64 KiB tmpfs mounted
in a private mount namespace (writes run out part-way through a record, as on a real
full disk; needs permission to mount), and the kernel's file-size limit (``RLIMIT_FSIZE``:
a write past it is cut short, then fails with EFBIG; works for any user).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from allocator.errors import ExecutorError
from allocator.executors import RunRecorder
from allocator.logs import read_attempts

# Fills the disk through a RunRecorder, frees room, writes on; prints what happened.
CHILD = r"""
import json, os, resource, sys
from pathlib import Path
from allocator.executors import RunRecorder

folder, mode = Path(sys.argv[1]), sys.argv[2]
path = folder / "runs.jsonl"
if mode == "tmpfs":
    (folder / "filler").write_bytes(b"x" * 8192)

def row(i):
    return {"query_id": f"q{i % 3}", "attempt_id": f"a{i}", "answer": str(i % 2),
            "correct": float(i % 2), "cost": 1.0, "completion": "y" * 333}

recorder = RunRecorder(path)
written, error = 0, None
for i in range(100_000):
    try:
        recorder.write(row(i))
    except Exception as caught:
        error = caught
        break
    written += 1
size = path.stat().st_size
whole_after_error = path.read_bytes().endswith(b"\n")
if mode == "tmpfs":
    os.unlink(folder / "filler")
else:
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
recorder.write(row(written))
recorder.close()
print(json.dumps({
    "error_type": type(error).__name__, "error": str(error), "written": written,
    "rows_written": recorder.rows_written, "size_after_error": size,
    "whole_after_error": whole_after_error,
    "content": path.read_text(encoding="utf-8", errors="replace"),
}))
"""

LIMIT_BYTES = 20_000


def _limit_file_size() -> None:  # runs in the child before exec
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then write() fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, resource.RLIM_INFINITY))


def _fill(mode: str, folder: Path) -> dict:
    env = dict(os.environ)
    if mode == "tmpfs":
        if not shutil.which("unshare") or os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root and unshare")
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount -t tmpfs -o size=64k tmpfs "$1" && exec "$2" -c "$3" "$1" tmpfs',
                   "sh", str(folder), sys.executable, CHILD]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        if done.returncode != 0 and "mount" in done.stderr and not done.stdout:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    else:
        done = subprocess.run([sys.executable, "-c", CHILD, str(folder), "rlimit"],
                              capture_output=True, text=True, env=env, timeout=120,
                              preexec_fn=_limit_file_size)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("mode", ["tmpfs", "file-size limit"])
def test_a_full_disk_cuts_the_record_back_and_the_log_stays_valid(tmp_path: Path,
                                                                   mode: str) -> None:
    folder = tmp_path / "disk"
    folder.mkdir()
    report = _fill(mode, folder)
    # The error is the project's, says what happened to the file and how to go on.
    assert report["error_type"] == "ExecutorError", report["error"]
    assert "runs.jsonl" in report["error"]
    assert "last whole record" in report["error"] and "Fix:" in report["error"]
    assert ("No space left" if mode == "tmpfs" else "too large") in report["error"]
    assert report["written"] > 10
    assert report["whole_after_error"]  # no torn record left behind
    # Writing on once there is room: every line is one whole record, none lost, none torn.
    lines = report["content"].splitlines()
    assert report["content"].endswith("\n")
    assert [json.loads(line)["attempt_id"] for line in lines] == [
        f"a{i}" for i in range(report["written"] + 1)]
    assert report["rows_written"] == report["written"] + 1
    copy = tmp_path / "runs.jsonl"
    copy.write_text(report["content"], encoding="utf-8")
    log, rejected = read_attempts(copy)
    assert log.n_attempts == report["written"] + 1 and len(rejected) == 0


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_a_device_that_is_always_full_gives_a_clear_error() -> None:
    recorder = RunRecorder("/dev/full")
    with pytest.raises(ExecutorError, match="No space left on device") as caught:
        recorder.write({"query_id": "q", "answer": "1", "correct": 1.0})
    assert "/dev/full" in str(caught.value) and "Fix:" in str(caught.value)
    assert recorder.rows_written == 0
    with pytest.raises(ExecutorError):  # and again: the recorder stays usable, not stuck
        recorder.write({"query_id": "q", "answer": "1", "correct": 1.0})
    recorder.close()
