"""The kernel path: two network namespaces joined by a veth pair, shaped with `tc`.

`apply` creates `<name>-edge` and `<name>-cloud` (addresses 10.213.0.1 and 10.213.0.2), then
puts a qdisc on each veth end's egress: `netem` for delay, jitter, loss (and rate) where the
kernel has it, `tbf` when only a rate is asked for. The host's own interfaces, lo included,
are never touched. Run the server with `ip netns exec <name>-cloud ...` and the edge with
`ip netns exec <name>-edge ...`. Anything half-built is removed when a step fails or on
Ctrl-C; `clear` deletes both namespaces, which removes the veths and qdiscs with them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

EDGE_ADDRESS = "10.213.0.1"
CLOUD_ADDRESS = "10.213.0.2"
PREFIX_LENGTH = 30
STATE_DIR = Path("/run/splitcast-netem")
NETEM_MODULE_HINT = (
    "load it with `modprobe sch_netem` (on a Jetson, build the kernel with "
    "CONFIG_NET_SCH_NETEM=m, and CONFIG_IFB for ingress shaping), or use the user-space relay "
    "`splitcast link`, which needs neither root nor kernel modules"
)


class KernelPathError(RuntimeError):
    """The kernel path cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class KernelLink:
    """What to apply in each direction (edge->cloud uses the edge veth's egress)."""

    name: str = "splitcast"
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_percent: float = 0.0
    rate_mbit: float | None = None

    @property
    def needs_netem(self) -> bool:
        return self.delay_ms > 0 or self.jitter_ms > 0 or self.loss_percent > 0

    @property
    def namespaces(self) -> tuple[str, str]:
        return f"{self.name}-edge", f"{self.name}-cloud"

    @property
    def veths(self) -> tuple[str, str]:
        stem = self.name[:10]
        return f"{stem}-e", f"{stem}-c"


def _run(*command: str, namespace: str | None = None) -> subprocess.CompletedProcess[str]:
    full = ["ip", "netns", "exec", namespace, *command] if namespace else list(command)
    return subprocess.run(full, capture_output=True, text=True, check=False)


def _check(*command: str, namespace: str | None = None) -> None:
    result = _run(*command, namespace=namespace)
    if result.returncode != 0:
        raise KernelPathError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")


def preflight(link: KernelLink) -> None:
    """Root, the tools, and (in a throwaway namespace) the qdisc kinds the link needs."""
    if os.geteuid() != 0:
        raise KernelPathError(
            "the kernel path needs root (network namespaces and tc); run it with sudo, or use "
            "the user-space relay `splitcast link`"
        )
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise KernelPathError(f"`{tool}` is not installed (package iproute2)")
    kinds = ["netem"] if link.needs_netem else ["tbf"] if link.rate_mbit else []
    probe = f"{link.name}-probe"
    _check("ip", "netns", "add", probe)
    try:
        _check("ip", "link", "set", "lo", "up", namespace=probe)
        for kind in kinds:
            args = ["delay", "1ms"] if kind == "netem" else _tbf_args(10.0)
            result = _run("tc", "qdisc", "add", "dev", "lo", "root", kind, *args, namespace=probe)
            if result.returncode != 0:
                raise KernelPathError(
                    f"this kernel has no `{kind}` qdisc ({result.stderr.strip()}); "
                    + (NETEM_MODULE_HINT if kind == "netem" else "enable CONFIG_NET_SCH_TBF")
                )
            _check("tc", "qdisc", "del", "dev", "lo", "root", namespace=probe)
    finally:
        _run("ip", "netns", "del", probe)


def _tbf_args(rate_mbit: float) -> list[str]:
    burst_bytes = max(1600, int(rate_mbit * 1e6 / 8 / 250))  # about 4 ms of traffic
    return ["rate", f"{rate_mbit}mbit", "burst", str(burst_bytes), "latency", "50ms"]


def _qdisc_args(link: KernelLink) -> list[str]:
    if not link.needs_netem:
        return ["tbf", *_tbf_args(link.rate_mbit)] if link.rate_mbit else []
    args = ["netem", "delay", f"{link.delay_ms}ms"]
    if link.jitter_ms:
        args += [f"{link.jitter_ms}ms", "distribution", "normal"]
    if link.loss_percent:
        args += ["loss", f"{link.loss_percent}%"]
    if link.rate_mbit:
        args += ["rate", f"{link.rate_mbit}mbit"]
    return args


def apply(link: KernelLink, state_dir: Path = STATE_DIR) -> dict[str, object]:
    """Build the namespaces and shape them; returns (and records) what was applied."""
    preflight(link)
    edge_ns, cloud_ns = link.namespaces
    edge_veth, cloud_veth = link.veths
    if edge_ns in list_namespaces():
        raise KernelPathError(f"{edge_ns} exists already; run `splitcast netem clear` first")
    try:
        _check("ip", "netns", "add", edge_ns)
        _check("ip", "netns", "add", cloud_ns)
        _check(
            "ip", "link", "add", edge_veth, "netns", edge_ns,
            "type", "veth", "peer", "name", cloud_veth, "netns", cloud_ns,
        )  # fmt: skip
        for namespace, veth, address in (
            (edge_ns, edge_veth, EDGE_ADDRESS),
            (cloud_ns, cloud_veth, CLOUD_ADDRESS),
        ):
            _check(
                "ip", "addr", "add", f"{address}/{PREFIX_LENGTH}", "dev", veth, namespace=namespace
            )
            _check("ip", "link", "set", veth, "up", namespace=namespace)
            _check("ip", "link", "set", "lo", "up", namespace=namespace)
            qdisc = _qdisc_args(link)
            if qdisc:
                _check("tc", "qdisc", "add", "dev", veth, "root", *qdisc, namespace=namespace)
    except BaseException:
        clear(link.name, state_dir)
        raise
    record: dict[str, object] = {
        "link": asdict(link),
        "namespaces": {"edge": edge_ns, "cloud": cloud_ns},
        "addresses": {"edge": EDGE_ADDRESS, "cloud": CLOUD_ADDRESS},
        "qdisc": " ".join(_qdisc_args(link)) or "none",
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / f"{link.name}.json").write_text(json.dumps(record, indent=2))
    return record


def list_namespaces() -> list[str]:
    result = _run("ip", "netns", "list")
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def show(name: str, state_dir: Path = STATE_DIR) -> dict[str, object]:
    """The recorded settings and the qdiscs the kernel reports now."""
    state = state_dir / f"{name}.json"
    if not state.is_file():
        raise KernelPathError(f"nothing applied under the name {name!r}")
    record = json.loads(state.read_text())
    record["tc"] = {
        side: _run("tc", "qdisc", "show", namespace=namespace).stdout.strip()
        for side, namespace in record["namespaces"].items()
    }
    return record


def clear(name: str, state_dir: Path = STATE_DIR) -> list[str]:
    """Delete the link's namespaces (and with them its veths and qdiscs); returns them."""
    link = KernelLink(name=name)
    removed = [ns for ns in link.namespaces if ns in list_namespaces()]
    for namespace in removed:
        _run("ip", "netns", "del", namespace)
    (state_dir / f"{name}.json").unlink(missing_ok=True)
    return removed
