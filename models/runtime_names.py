"""Runtimes the edge and the server can run networks on, importable without torch (command-line
choices use them); the first is the default."""

RUNTIMES = ("onnxruntime", "torch")
