"""Exceptions that carry a user-facing message and the exit code the CLI maps them to."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

EXIT_RUNTIME = 1
EXIT_USAGE = 2


class AliceError(Exception):
    """A failure the user should see as one line, without a traceback."""

    exit_code = EXIT_RUNTIME


class UsageError(AliceError):
    """The user asked for something malformed: a bad argument, a bad config value."""

    exit_code = EXIT_USAGE


class NotFoundError(UsageError):
    """A location, file or catalog entry the user named does not exist."""


class ApiMisuseError(UsageError, TypeError):
    """The Python API called the wrong way: an async callback where a plain one is expected
    or the reverse, a registry and a catalog that are two different files."""


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a configuration, located as precisely as the source allows."""

    source: str | None  # file name, or a label such as "--rule 1" for CLI input
    line: int | None
    key: str  # dotted key path, e.g. storage.locations[1].rules[0].min_quality_stars
    message: str

    def __str__(self) -> str:
        where = self.source or ""
        if self.line is not None:
            where = f"{where}:{self.line}"
        if self.key:
            return f"{where} {self.key}: {self.message}" if where else \
                f"{self.key}: {self.message}"
        return f"{where}: {self.message}" if where else self.message


def is_async_callable(func: object) -> bool:
    """Whether calling `func` gives an awaitable (an async function, a partial of one, or an
    object with an async __call__)."""
    call = type(func).__call__ if callable(func) else None
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call)


def check_plain_callback(func: object, what: str) -> None:
    """ApiMisuseError when `func`, a callback called without awaiting, is async."""
    if func is not None and is_async_callable(func):
        raise ApiMisuseError(f"{what} must be a plain function (def, not async def): it is "
                             "called between transfers, never awaited")


class ConfigError(UsageError):
    """Every problem found in one configuration source, reported together."""

    def __init__(self, problems: list[ConfigProblem]):
        # In file order, so the report reads top to bottom like the file.
        self.problems = sorted(problems, key=lambda p: (p.line is None, p.line or 0))
        super().__init__("\n".join(str(p) for p in self.problems))


class CatalogError(AliceError):
    """The catalog file cannot be opened, is from a newer alicefs, or is damaged."""
