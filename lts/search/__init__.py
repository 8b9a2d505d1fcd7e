"""The search: the space of GPT-2 configs, NSGA-II (pymoo) over it, the front, its report, and the job that runs it."""
