"""Downlink codecs: exact round trips (also across processes), clear errors for bad payloads,
and entropy-model estimates that match the real bitstream."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from splitcast.cloud.runtime import RemoteRuntime
from splitcast.edge.sources import MOVING_SCENE, open_source
from splitcast.models.checkpoint import load_system
from splitcast.models.codec import CodecError, EncodedTensor, codec_set, get_codec
from splitcast.models.registry import SplitSystem


def test_raw_fp16_round_trip_is_exact_in_fp16() -> None:
    codec = get_codec("raw-fp16")
    features = np.random.default_rng(0).normal(size=(32, 16, 32)).astype(np.float32)
    encoded = codec.encode(features)
    assert len(encoded.payload) == features.size * 2
    decoded = codec.decode(encoded)
    np.testing.assert_array_equal(decoded, features.astype(np.float16).astype(np.float32))


def test_truncated_payload_is_rejected() -> None:
    codec = get_codec("raw-fp16")
    encoded = codec.encode(np.ones((4, 2, 2), dtype=np.float32))
    with pytest.raises(CodecError, match="bytes"):
        codec.decode(dataclasses.replace(encoded, payload=encoded.payload[:-3]))


def test_non_finite_payload_is_rejected() -> None:
    codec = get_codec("raw-fp32")
    encoded = codec.encode(np.array([[[np.nan]]], dtype=np.float32))
    with pytest.raises(CodecError, match="non-finite"):
        codec.decode(encoded)


def test_absurd_shape_and_unknown_codec_are_rejected() -> None:
    codec = get_codec("raw-fp16")
    encoded = codec.encode(np.ones((1, 1, 1), dtype=np.float32))
    with pytest.raises(CodecError, match="implausibly large"):
        codec.decode(dataclasses.replace(encoded, shape=(100000, 100000, 100)))
    with pytest.raises(CodecError, match="unknown codec"):
        get_codec("magic")
    with pytest.raises(CodecError, match="no learned codec"):
        get_codec("learned")


def test_int8_zstd_error_is_within_half_a_step_and_corruption_is_caught() -> None:
    codec = get_codec("int8-zstd")
    features = np.random.default_rng(1).normal(size=(40, 16, 32)).astype(np.float32)
    features[3] = 0.0
    encoded = codec.encode(features)
    decoded = codec.decode(encoded)
    step = np.abs(features).reshape(40, -1).max(axis=1) / 127
    error = np.abs(decoded - features).reshape(40, -1).max(axis=1)
    assert (error <= step / 2 + 1e-6).all() and not decoded[3].any()
    assert len(encoded.payload) < features.size
    for payload in (encoded.payload[:-5], b"junk" + encoded.payload[4:]):
        with pytest.raises(CodecError):
            codec.decode(dataclasses.replace(encoded, payload=payload))


@pytest.fixture(scope="module")
def learned_system(learned_tiny: Path) -> tuple[SplitSystem, Path]:
    return load_system(learned_tiny), learned_tiny


def _real_features(system: SplitSystem) -> np.ndarray:
    """Downlink features of the remote model on frames of the built-in moving scene."""
    runtime = RemoteRuntime(system)
    context = runtime.new_stream()
    for sequence, rgb in enumerate(open_source(MOVING_SCENE, max_frames=4).frames()):
        answer = runtime.answer(context, sequence, rgb, 3.0)[0]
    return answer["features"][0].numpy()


def test_learned_round_trip_is_exact_on_random_and_real_features(
    learned_system: tuple[SplitSystem, Path],
) -> None:
    system, _ = learned_system
    codec = get_codec("learned", system.bottleneck)
    shape = system.local.downlink_shape(system.config.local_size)
    random = np.random.default_rng(2).normal(scale=3.0, size=shape).astype(np.float32)
    for features in (random, _real_features(system)):
        expected = system.bottleneck.symbols(torch.from_numpy(features)[None])[0].numpy()
        encoded = codec.encode(features)
        np.testing.assert_array_equal(codec.decode_symbols(encoded), expected)
        reconstructed = system.bottleneck.reconstruct(torch.from_numpy(expected)[None])[0]
        np.testing.assert_array_equal(codec.decode(encoded), reconstructed.detach().numpy())
        estimated_bytes = float(system.bottleneck.table_bits(torch.from_numpy(expected)[None])) / 8
        print(f"estimated {estimated_bytes:.0f} B, actual {len(encoded.payload)} B")
        assert len(encoded.payload) <= 1.05 * estimated_bytes + 12


def test_learned_corrupt_or_truncated_payload_is_an_error(
    learned_system: tuple[SplitSystem, Path],
) -> None:
    system, _ = learned_system
    codec = get_codec("learned", system.bottleneck)
    encoded = codec.encode(_real_features(system))
    flipped = bytearray(encoded.payload)
    flipped[len(flipped) // 2] ^= 0x5A
    for payload in (encoded.payload[:-4], encoded.payload[:-3], bytes(flipped), b""):
        with pytest.raises(CodecError):
            codec.decode(dataclasses.replace(encoded, payload=payload))
    with pytest.raises(CodecError, match="bottleneck"):
        codec.decode(dataclasses.replace(encoded, shape=(3, *encoded.shape[1:])))
    assert set(codec_set(system.bottleneck)) == {
        "raw-fp16", "raw-fp32", "int8-zstd", "learned", "logprobs-u4-zstd"
    }  # fmt: skip
    assert "learned" not in codec_set(None)


CODEC_SCRIPT = """
import sys
from pathlib import Path
import numpy as np
from splitcast.data.images import fit
from splitcast.edge.sources import MOVING_SCENE, open_source
from splitcast.models.checkpoint import load_system
from splitcast.models.codec import EncodedTensor, get_codec

folder, mode, data = sys.argv[1], sys.argv[2], Path(sys.argv[3])
system = load_system(folder)
codec = get_codec("learned", system.bottleneck)
if mode == "encode":
    features = np.load(data.with_suffix(".npy"))
    encoded = codec.encode(features)
    data.write_bytes(encoded.payload)
    print(",".join(map(str, encoded.shape)))
else:
    shape = tuple(int(v) for v in sys.argv[4].split(","))
    encoded = EncodedTensor("learned", shape, "uint8", 1.0, data.read_bytes())
    np.save(data.with_suffix(".symbols.npy"), codec.decode_symbols(encoded))
"""


def test_learned_bitstream_decodes_identically_in_another_process(
    learned_system: tuple[SplitSystem, Path], tmp_path: Path
) -> None:
    system, folder = learned_system
    features = _real_features(system)
    np.save(tmp_path / "frame.npy", features)
    run = [sys.executable, "-c", CODEC_SCRIPT, str(folder)]
    encoded = subprocess.run(
        [*run, "encode", str(tmp_path / "frame.bin")], capture_output=True, text=True, timeout=120
    )
    assert encoded.returncode == 0, encoded.stderr[-2000:]
    shape = encoded.stdout.strip()
    payload = (tmp_path / "frame.bin").read_bytes()
    local = get_codec("learned", system.bottleneck).encode(features)
    assert payload == local.payload
    decoded = subprocess.run(
        [*run, "decode", str(tmp_path / "frame.bin"), shape],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert decoded.returncode == 0, decoded.stderr[-2000:]
    remote_symbols = np.load(tmp_path / "frame.symbols.npy")
    here = get_codec("learned", system.bottleneck).decode_symbols(
        EncodedTensor("learned", local.shape, "uint8", 1.0, payload)
    )
    np.testing.assert_array_equal(remote_symbols, here)
