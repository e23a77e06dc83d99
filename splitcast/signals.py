"""Stopping long-running commands the way service managers and terminals ask.

Ctrl-C raises KeyboardInterrupt in the main thread; SIGTERM (a service manager, a container
runtime, `timeout`) is made to raise `Terminated`, a KeyboardInterrupt, so one cleanup path
serves both: `finally` blocks finalise videos, close logs and stop child processes, and a
command that was stopped writes its summary of what it did before it exits with 128 + the
signal's number.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger("splitcast")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt."""


def raise_on_terminate() -> None:
    """From now on the first SIGTERM raises `Terminated`; later ones are ignored, so a second
    signal cannot cut the cleanup the first one started."""

    def _raise(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    signal.signal(signal.SIGTERM, _raise)


def signal_name(interrupt: KeyboardInterrupt) -> str:
    """Which signal stopped the run: SIGTERM or SIGINT."""
    return "SIGTERM" if isinstance(interrupt, Terminated) else "SIGINT"


def interrupted_status(interrupt: KeyboardInterrupt | str) -> int:
    """The exit status of a run stopped by a signal, as shells report it (130, 143)."""
    name = interrupt if isinstance(interrupt, str) else signal_name(interrupt)
    return 128 + signal.Signals[name].value


def stopped_status(command: str, stopped_by: str | None, kept: str = "outputs saved") -> int:
    """0 for a run that ended by itself; for one stopped by a signal, say so and what was
    `kept` on stderr and return its interrupted status."""
    if stopped_by is None:
        return 0
    print(f"splitcast {command}: stopped by {stopped_by}; {kept}", file=sys.stderr)
    return interrupted_status(stopped_by)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver the first one again to
    whatever handles it: a checkpoint is written with its training state, a frame's output to
    the log and the video together. Only the main thread receives signals; elsewhere this
    does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        signal.raise_signal(received[0])


async def until_terminated() -> None:
    """Wait for Ctrl-C or SIGTERM (how `splitcast demo` and service managers stop us)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def let_threads_finish(timeout_s: float = 3.0) -> None:
    """Give background threads still running at exit (gRPC's channel threads end a moment
    after their channel closes) up to `timeout_s` in all: one still inside gRPC's C++ code
    when the interpreter finalises aborts the process ("FATAL: exception not rethrown")."""
    deadline = time.monotonic() + timeout_s
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread is threading.main_thread():
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.debug("thread %s still running at exit", thread.name)
