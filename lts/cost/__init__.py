"""The cost model: what a candidate costs and how good the proxy says it is, measured on a Target.

``objectives`` (the registry), ``proxy`` (closed-form parameter counts), ``graph`` (the ONNX
graph, written directly), ``target`` (where and how a graph runs), ``measure`` (isolated
measurement), ``evaluator`` + ``store`` (the one entry point and its SQLite cache).
"""
