"""The shared core every subpackage uses: errors, atomic writes, cache keys, settings and CLI plumbing, hub
access, child processes, writing ONNX graphs, CSV cells. Nothing here imports another LTS subpackage."""
