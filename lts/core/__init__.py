"""The shared core every subpackage uses: ArchConfig + archid, errors, atomic writes, CLI plumbing,
hub access, child processes and CSV cells. Nothing here imports another LTS subpackage."""
