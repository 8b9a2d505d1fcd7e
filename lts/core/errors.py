"""One error type for bad user input; the CLI layer turns it into one line + exit 2."""


class LTSError(ValueError):
    """Invalid user input or an impossible request (never a bug in LTS itself)."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when it has none)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
