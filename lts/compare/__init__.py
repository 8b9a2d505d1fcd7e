"""Model comparison (``benchmark.py``): models side by side on loading, generation, diversity and memory.

``settings`` (what to run, figure definitions), ``runner`` (the parent: one child per model),
``worker`` (the torch side, in the child), ``plots`` (PNG charts and the HTML page).
"""
