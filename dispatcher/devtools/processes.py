"""Loopback ports and child processes: what every local tool needs."""

from __future__ import annotations

import signal
import socket
import subprocess


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(
    process: subprocess.Popen[bytes], timeout_s: float = 10, sig: int = signal.SIGTERM
) -> int:
    """Ask a child to stop (SIGTERM by default), wait up to `timeout_s`, then kill it; its exit
    code. The one place the local tooling stops a process."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(timeout=10)
    return process.returncode
