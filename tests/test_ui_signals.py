"""The app in a real terminal (a pty): a closed terminal or `kill` still removes the sandbox."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest


def owned_by(pid: int) -> list[Path]:
    found = []
    for directory in Path(tempfile.gettempdir()).glob("dbsandbox-*"):
        owner = directory / "owner.pid"
        if owner.is_file() and owner.read_text().strip() == str(pid):
            found.append(directory)
    return found


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_the_app_removes_its_sandbox_on_hangup_and_kill(sig: signal.Signals) -> None:
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        start_new_session=True,
    )
    os.close(follower)
    try:
        deadline = time.monotonic() + 20
        while not owned_by(process.pid) and time.monotonic() < deadline:
            _drain(leader)
            time.sleep(0.1)
        assert owned_by(process.pid), "the app never created its sandbox"
        time.sleep(0.5)  # let it finish mounting, as a person would take a moment
        process.send_signal(sig)
        deadline = time.monotonic() + 15
        while process.poll() is None and time.monotonic() < deadline:
            _drain(leader)
            time.sleep(0.05)
        assert process.poll() is not None, "the app did not exit"
        assert owned_by(process.pid) == []
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)


def _drain(fd: int) -> None:
    """Read what the app drew, so it never blocks on a full terminal buffer."""
    import select

    while select.select([fd], [], [], 0)[0]:
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return
