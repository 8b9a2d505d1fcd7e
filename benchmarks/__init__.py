"""LTS's benchmarks: each measures speed, memory or quality against a baseline and writes one JSON result.

Run one from the repository root as a module (``-h`` lists its flags)::

    python -m benchmarks.generation --sizes 6x512
    python -m benchmarks.results_pages          # docs/results/*.md from benchmarks/results/*.json

A module whose name has no leading underscore is a benchmark: ``main(argv)`` under a ``__main__`` guard, its
work split into measuring, making the rows, and one ``write_result`` call (benchmarks/_results.py). Those with
one are what several benchmarks share: ``_results`` (the JSON result with its machine and versions, printed
tables), ``_cli`` (the flags several take), ``_models`` (random GPT-2s), ``_stats`` (rank correlation),
``_peer_venv`` (the peers' own virtual environments), ``_peer_worker`` with ``_optimum_worker`` and
``_ctranslate2_worker`` (what runs inside a peer's venv: the standard library only at import), ``_onnx_child``
(an ONNX graph timed and its memory sampled in a fresh process). Adding a benchmark:
benchmarks/results/README.md.

Measuring children: lts measures in child processes that multiprocessing starts by importing the ``__main__``
module again (as ``__mp_main__``), so a benchmark that measures through lts's evaluator imports torch,
transformers, scipy and matplotlib inside the functions that use them, not at its top: each child would
import them too, and a fresh evaluation's seconds would count it. Its lts imports stay at the top (lts imports
none of those at import time).
"""
