"""Answers sent through a codec and back in one process: what offline evaluation, calibration
and the benchmarks run to see exactly what a live edge receives, without a network."""

from __future__ import annotations

import numpy as np
import torch

from splitcast.models.codec import Codec


def through_wire(
    answer: dict[str, torch.Tensor], codec: Codec | None, sizes: list[int] | None = None
) -> dict[str, torch.Tensor]:
    """Each answer tensor [B, ...] after encoding to bytes and decoding, on the CPU (each
    item's byte size, all its tensors together, is appended to `sizes`); unchanged without
    a codec. What offline evaluation runs to see exactly what a live edge receives."""
    if codec is None:
        return answer
    decoded: dict[str, torch.Tensor] = {}
    totals = np.zeros(len(next(iter(answer.values()))), dtype=np.int64)
    for name, tensor in answer.items():
        items = []
        for index, item in enumerate(tensor.cpu().numpy()):
            encoded = codec.encode(item)
            totals[index] += len(encoded.payload)
            items.append(torch.from_numpy(codec.decode(encoded)))
        decoded[name] = torch.stack(items)
    if sizes is not None:
        sizes.extend(int(n) for n in totals)
    return decoded
