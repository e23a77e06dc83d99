"""Downlink codec names and late-average constants, importable without torch (command-line
choices and defaults use them)."""

STATELESS_CODECS = ("raw-fp16", "raw-fp32", "int8-zstd")
PROBABILITY_CODEC = "logprobs-u4-zstd"  # class log-probabilities only (the late-average downlink)
LOG_PROBABILITY_FLOOR = -6.0  # the smallest log-probability it carries
CODEC_NAMES = (*STATELESS_CODECS, "learned", PROBABILITY_CODEC)
DEFAULT_LATE_BLUR = 7  # side of the box the late average blurs the remote's probabilities over
