"""One error type for bad user input; the CLI layer turns it into one line + exit 2."""


class LTSError(ValueError):
    """Invalid user input or an impossible request (never a bug in LTS itself)."""

    exit_status = 2


class JobFailed(LTSError):
    """The input was fine but the job produced nothing usable (e.g. every candidate failed): exit status 1."""

    exit_status = 1


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when it has none)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
