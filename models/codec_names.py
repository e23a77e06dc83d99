"""Codec and combiner names, importable without torch (command-line choices use them)."""

STATELESS_CODECS = ("raw-fp16", "raw-fp32", "int8-zstd")
PROBABILITY_CODEC = "logprobs-u4-zstd"  # class log-probabilities only (the late-average downlink)
LOG_PROBABILITY_FLOOR = -6.0  # the smallest log-probability it carries
CODEC_NAMES = (*STATELESS_CODECS, "learned", PROBABILITY_CODEC)
COMBINER_NAMES = ("feature_fusion", "late_average")  # `splitcast.models.combiners.COMBINERS`
