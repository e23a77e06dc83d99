"""splitcast: real-time split inference on video between an edge device and a cloud server.

The cloud's answer is always one round trip late; its model is told how late (Dedelayed) and
the edge combines the late answer with its own on-time output without ever waiting for it.

    import splitcast
    system = splitcast.load_model("default")
    with splitcast.EdgeClient(system, server="127.0.0.1:50051") as edge:
        result = edge.step(frame_rgb)          # class ids, and how they were made

`splitcast.EdgeClient("edge-model", ...)` runs the edge from an export folder (`splitcast
export`) without PyTorch. `splitcast.serve(...)` runs the cloud side in this process.
Attributes load on first use, so `splitcast --help` and the edge-only install do not import
PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["EdgeClient", "EdgeResult", "load_model", "serve"]

_LAZY = {
    "EdgeClient": ("splitcast.edge.client", "EdgeClient"),
    "EdgeResult": ("splitcast.edge.client", "EdgeResult"),
    "load_model": ("splitcast.models.checkpoint", "load_system"),
    "serve": ("splitcast.cloud.serving", "serve"),
}

if TYPE_CHECKING:
    from splitcast.cloud.serving import serve
    from splitcast.edge.client import EdgeClient, EdgeResult
    from splitcast.models.checkpoint import load_system as load_model


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'splitcast' has no attribute {name!r}")
    from importlib import import_module

    module, attribute = _LAZY[name]
    return getattr(import_module(module), attribute)
