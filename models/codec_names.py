"""Downlink codec names and late-average constants, importable without torch (command-line
choices and defaults use them)."""

STATELESS_CODECS = ("raw-fp16", "raw-fp32", "int8-zstd")
PROBABILITY_CODEC = "logprobs-u4-zstd"  # class log-probabilities only (the late-average downlink)
LOG_PROBABILITY_FLOOR = -6.0  # the smallest log-probability it carries
CODEC_NAMES = (*STATELESS_CODECS, "learned", PROBABILITY_CODEC)
DEFAULT_LATE_BLURS = (1, 3, 5, 7)  # box sides `calibrate --late-average` tries per age
DEFAULT_LATE_WARPED_WEIGHTS = (0.0, 0.2, 0.3, 0.4)  # weights of the moved on-time answer it tries
