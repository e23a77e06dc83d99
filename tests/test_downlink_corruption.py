"""A truncated or bit-flipped downlink payload never reaches the edge's combiner as garbage:
every codec's real payload, cut short or with any bit flipped, is either refused with a
CodecError (the edge counts it and keeps its last answer) or decodes to finite values of the
announced shape (a flipped bit inside a value cannot be told from a real one without a
checksum; the learned codec carries one)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from splitcast.edge.connection import decode_answer
from splitcast.models.answers import WireTensor
from splitcast.models.codec import Codec, CodecError, get_codec
from splitcast.models.codec_names import PROBABILITY_CODEC, STATELESS_CODECS
from splitcast.models.registry import build, get_config, with_bottleneck
from splitcast.v1 import splitcast_pb2 as pb
from splitcast.v1.wire import tensor_message

SHAPE = (8, 12, 16)


def _encoded() -> dict[str, tuple[WireTensor, Codec, pb.Tensor]]:
    """A real answer tensor of each codec, encoded."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 2.0, SHAPE).astype(np.float32)
    log_probs = logits - np.log(np.exp(logits).sum(axis=0, keepdims=True))
    payloads = {}
    for name in (*STATELESS_CODECS, PROBABILITY_CODEC):
        codec = get_codec(name)
        features = log_probs if name == PROBABILITY_CODEC else logits
        message = tensor_message("answer", codec.encode(features))
        payloads[name] = (WireTensor("answer", SHAPE, name), codec, message)
    system = build(with_bottleneck(get_config("tiny"), width=8))
    assert system.bottleneck is not None
    system.bottleneck.finalize_tables()
    spec = next(t for t in system.combiner("learned").wire() if t.codec == "learned")
    codec = get_codec("learned", system.bottleneck)
    with torch.no_grad():
        features = torch.randn(1, *system.local.downlink_shape(system.config.local_size))
    message = tensor_message(spec.name, codec.encode(features[0].numpy()))
    payloads["learned"] = (spec, codec, message)
    return payloads


ENCODED = _encoded()


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(sorted(ENCODED)),
    cut=st.floats(0.0, 1.0, exclude_max=True),
    flips=st.lists(st.floats(0.0, 1.0, exclude_max=True), max_size=3),
)
def test_a_corrupted_answer_is_refused_or_finite(name: str, cut: float, flips: list[float]) -> None:
    spec, codec, message = ENCODED[name]
    payload = bytearray(message.payload)
    for position in flips:  # a bit anywhere in the payload
        bit = int(position * len(payload) * 8)
        payload[bit // 8] ^= 1 << (bit % 8)
    if not flips:  # truncated somewhere
        payload = payload[: int(cut * len(payload))]
    corrupted = pb.Tensor()
    corrupted.CopyFrom(message)
    corrupted.payload = bytes(payload)
    try:
        tensors = decode_answer(pb.Answer(tensors=[corrupted]), (spec,), {name: codec})
    except CodecError:
        return
    decoded = tensors[spec.name]
    assert decoded.shape == (1, *spec.shape) and np.isfinite(decoded).all()
