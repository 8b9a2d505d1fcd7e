"""The cost model: what a candidate costs, measured on a Target.

``objectives`` and ``probes`` (the registries: every figure, every kind of measurement), ``target``
(where and how a graph runs), ``quantize`` (int8 weights), ``settings`` (how a graph is measured),
``feeds`` (its inputs), ``scratch`` (where its files are written), ``timing`` (timing beside the
reference graph), ``child`` (starting a child process), ``measure`` (one candidate's probes in a
child), ``table`` (many latency parts in one child), ``evaluator`` + ``store`` (the one entry point
and its SQLite cache), ``cli`` (``lts evaluate``).
"""
