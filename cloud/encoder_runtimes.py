"""Runtimes the server can run the remote's per-frame encoder on, importable without torch
(command-line choices use them); the first is the default."""

ENCODER_RUNTIMES = ("onnxruntime", "torch")
