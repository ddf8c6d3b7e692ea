"""The one error type a user can cause: bad input, named by file and field.

Every command catches :class:`InputError` at its entry point, prints its message
as one line on stderr and exits with status 2 (DESIGN.md, "Exit status").
"""

from __future__ import annotations

MAX_PROBLEM_CHARS = 300  # a bad value quoted in full (a megabyte of garbage) must not flood a log line


def _one_line(text: str | None) -> str | None:
    """Control characters (a key or value holding a newline) shown escaped: the message stays one line."""
    if text is None or text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class InputError(ValueError):
    """Bad input a user can fix: a file, a field inside it, and what is wrong.

    ``str(error)`` is the one line shown to the user, e.g.
    ``site.toml: cells[3].polygon: needs at least 3 points``.
    """

    def __init__(self, source: str | None, field: str | None, problem: str) -> None:
        source, field, problem = _one_line(source), _one_line(field), _one_line(problem) or ""
        if source is not None and len(source) > MAX_PROBLEM_CHARS:  # a fuzzed or mistyped path: its two ends
            half = MAX_PROBLEM_CHARS // 2
            source = source[:half] + "…" + source[-half:]
        self.source = source
        self.field = field
        if len(problem) > MAX_PROBLEM_CHARS:
            problem = problem[: MAX_PROBLEM_CHARS - 1] + "…"
        self.problem = problem
        parts = [p for p in (source, field, problem) if p]
        super().__init__(": ".join(parts))

    def with_source(self, source: str) -> InputError:
        """The same error attributed to ``source`` (when the parser did not know the file)."""
        return InputError(source, self.field, self.problem)
