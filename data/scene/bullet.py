"""pybullet, imported without the banners its C code prints to standard output."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null (pybullet prints from C, bypassing sys.stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


with quiet_stdout():
    import pybullet
    from pybullet_utils.bullet_client import BulletClient


def direct_client() -> BulletClient:
    """A new headless pybullet world (software renderer only)."""
    with quiet_stdout():
        return BulletClient(connection_mode=pybullet.DIRECT)


__all__ = ["BulletClient", "direct_client", "pybullet", "quiet_stdout"]
