"""The kernel path on this machine: namespaces + veth + tbf, netem's absence reported, cleanup.

Runs only as root with iproute2; traffic stays between the test's own namespaces.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from splitcast.netem.kernel import (
    CLOUD_ADDRESS,
    KernelLink,
    KernelPathError,
    apply,
    clear,
    list_namespaces,
    show,
)


def _can_make_namespaces() -> bool:
    """Root with iproute2 and a kernel/container that allows network namespaces."""
    if os.geteuid() != 0 or shutil.which("tc") is None:
        return False
    probe = f"sccap{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return made.returncode == 0


pytestmark = pytest.mark.skipif(
    not _can_make_namespaces(), reason="needs root, iproute2 and network namespaces"
)

RECEIVER = """
import socket, sys, time
server = socket.create_server((sys.argv[1], 5201))
conn, _ = server.accept()
total, first = 0, None
while data := conn.recv(1 << 16):
    first = first or time.perf_counter()
    total += len(data)
print(total, time.perf_counter() - first)
"""
SENDER = """
import socket, sys, time
for _ in range(50):
    try:
        conn = socket.create_connection((sys.argv[1], 5201))
        break
    except OSError:
        time.sleep(0.1)
conn.sendall(b"x" * int(sys.argv[2]))
conn.close()
"""


@pytest.fixture
def name(tmp_path: Path) -> Iterator[str]:
    prefix = f"sct{os.getpid() % 100000}"
    yield prefix
    clear(prefix, tmp_path)
    assert not [ns for ns in list_namespaces() if ns.startswith(prefix)]


def _in(namespace: str, script: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, sys.executable, "-c", script, *args]


def test_tbf_rate_through_namespaces_and_cleanup(name: str, tmp_path: Path) -> None:
    link = KernelLink(name=name, rate_mbit=20.0)
    record = apply(link, tmp_path)
    assert "tbf" in str(record["qdisc"])
    edge, cloud = link.namespaces
    assert {edge, cloud} <= set(list_namespaces())
    assert "tbf" in show(name, tmp_path)["tc"]["edge"]
    receiver = subprocess.Popen(
        _in(cloud, RECEIVER, CLOUD_ADDRESS), stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(0.3)
        subprocess.run(_in(edge, SENDER, CLOUD_ADDRESS, "2500000"), check=True, timeout=30)
        total, seconds = receiver.communicate(timeout=30)[0].split()
    finally:
        receiver.kill()
    rate = int(total) * 8 / float(seconds) / 1e6
    print(f"tbf at 20 Mbit/s between namespaces: {rate:.2f} Mbit/s")
    assert abs(rate / 20.0 - 1) <= 0.1
    assert set(clear(name, tmp_path)) == {edge, cloud}
    assert not (tmp_path / f"{name}.json").exists()


def test_missing_netem_is_reported_and_nothing_is_left(name: str, tmp_path: Path) -> None:
    try:
        record = apply(KernelLink(name=name, delay_ms=20.0), tmp_path)
    except KernelPathError as exc:  # this machine's kernel: no sch_netem
        assert "no `netem` qdisc" in str(exc) and "splitcast link" in str(exc)
        assert not [ns for ns in list_namespaces() if ns.startswith(name)]
    else:
        assert str(record["qdisc"]).startswith("netem delay 20.0ms")
