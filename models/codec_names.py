"""Downlink codec names, importable without torch (command-line choices use them)."""

STATELESS_CODECS = ("raw-fp16", "raw-fp32", "int8-zstd")
CODEC_NAMES = (*STATELESS_CODECS, "learned")
