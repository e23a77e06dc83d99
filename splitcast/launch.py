"""Start `splitcast serve` / `splitcast link` as child processes and wait until they listen.

Used by the demo and by tests: each child prints one `listening on HOST:PORT` line when ready
(port 0 picks a free port), after which its output is drained into a log file so it can never
block on a full pipe.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

READY_PATTERN = re.compile(r"listening on (\S+):(\d+)")
# Two model threads for a server sharing the machine with an edge: the edge's step leaves most
# of its own core idle, and on two cores the second thread shortens the server's step (more
# answers used in the demo) at a small cost to the edge's latency (docs/experiments.md).
SHARED_MACHINE_SERVER_THREADS = 2
# ... at a lower CPU priority (`serve --nice`): the edge is the real-time part, so it gets the
# CPU first and the server takes what is left; its answers come later, inside the horizon.
SHARED_MACHINE_SERVER_NICE = 10


class LaunchError(RuntimeError):
    """A child process that exited or stayed silent instead of becoming ready."""


class ChildProcess:
    """A running splitcast subcommand with the port it listens on."""

    def __init__(
        self, args: list[str], log_path: Path | None = None, ready_timeout_s: float = 60.0
    ) -> None:
        self.args = args
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "splitcast", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.host, self.port = self._await_ready(ready_timeout_s)
        self._drain = threading.Thread(target=self._copy_output, daemon=True)
        self._drain.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def rss_mb(self) -> float:
        """The process's resident memory in MB now (Linux; NaN where /proc does not say)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def _await_ready(self, timeout_s: float) -> tuple[str, int]:
        assert self.process.stdout is not None
        seen: list[str] = []
        found: list[tuple[str, int]] = []

        def scan(stream: IO[str]) -> None:
            for line in stream:
                seen.append(line.rstrip())
                match = READY_PATTERN.search(line)
                if match:
                    found.append((match.group(1), int(match.group(2))))
                    return

        scanner = threading.Thread(target=scan, args=(self.process.stdout,), daemon=True)
        scanner.start()
        scanner.join(timeout_s)
        if not found:
            self.stop()
            tail = "\n".join(seen[-20:])
            raise LaunchError(
                f"`splitcast {' '.join(self.args)}` did not become ready within {timeout_s:.0f} s "
                f"(exit code {self.process.returncode}):\n{tail}"
            )
        self._early_output = seen
        return found[0]

    def _copy_output(self) -> None:
        assert self.process.stdout is not None
        sink = self.log_path.open("w", encoding="utf-8") if self.log_path else None
        try:
            if sink:
                sink.writelines(line + "\n" for line in self._early_output)
            for line in self.process.stdout:
                if sink:
                    sink.write(line)
                    sink.flush()
        finally:
            if sink:
                sink.close()

    def kill(self) -> None:
        """Kill abruptly (SIGKILL), as a crash or a pulled cable would."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask to stop (SIGTERM); kill if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_server(
    model: str = "default",
    threads: int | None = SHARED_MACHINE_SERVER_THREADS,
    log_path: Path | None = None,
    extra: list[str] | None = None,
    device: str = "auto",
    precision: str | None = None,
    nice: int = 0,
) -> ChildProcess:
    """`splitcast serve` on a free loopback port, its remote step on `device` in `precision`
    (`splitcast.models.devices`), its CPU priority lowered by `nice`; `extra` adds flags."""
    args = ["serve", "--host", "127.0.0.1", "--port", "0", "--model", model, "--device", device]
    if precision:
        args += ["--precision", precision]
    if threads:
        args += ["--threads", str(threads)]
    if nice:
        args += ["--nice", str(nice)]
    return ChildProcess([*args, *(extra or [])], log_path)


def start_link(
    upstream: str, delay_ms: float, log_path: Path | None = None, extra: list[str] | None = None
) -> ChildProcess:
    """A relay adding `delay_ms` each way; `extra` adds `splitcast link` flags (a profile...)."""
    args = ["link", "--listen", "127.0.0.1:0", "--upstream", upstream]
    return ChildProcess([*args, "--delay-ms", f"{delay_ms:g}", *(extra or [])], log_path)
