"""Downlink codec names, importable without torch (command-line choices use them)."""

STATELESS_CODECS = ("raw-fp16", "raw-fp32", "int8-zstd")
PROBABILITY_CODEC = "probs-u4-zstd"  # class probabilities only (the late-average downlink)
CODEC_NAMES = (*STATELESS_CODECS, "learned", PROBABILITY_CODEC)
