"""One error type for bad user input; the CLI layer turns it into one line + exit 2."""


class LTSError(ValueError):
    """Invalid user input or an impossible request (never a bug in LTS itself)."""
