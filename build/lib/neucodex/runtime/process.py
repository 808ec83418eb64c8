"""``neucodex serve`` as a child process: started on a free port, stopped with a drain."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from ..errors import NeucodexError


def spawn_server(checkpoint: str | Path, *args: str, host: str = "127.0.0.1") -> tuple[subprocess.Popen, str]:
    """Start the cloud on a free port of ``host``; returns (process, "host:port") once it listens."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "neucodex.cli",
            "serve",
            "--checkpoint",
            str(checkpoint),
            "--host",
            host,
            "--port",
            "0",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()  # "serving model … on HOST:PORT", or EOF when it failed
    if "serving model" not in line:
        proc.kill()
        raise NeucodexError(f"the cloud server did not start: {proc.stderr.read().strip() or 'no output'}")
    return proc, line.rsplit(" ", 1)[-1].strip()


def stop_server(proc: subprocess.Popen, timeout: float = 30.0) -> bool:
    """SIGTERM (open samples finish), then kill if it lingers; True once the process is gone."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.poll() is not None
