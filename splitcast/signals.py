"""Stopping long-running commands the way service managers and terminals ask."""

from __future__ import annotations

import asyncio
import signal


async def until_terminated() -> None:
    """Wait for Ctrl-C or SIGTERM (how `splitcast demo` and service managers stop us)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
