"""The dispatcher's exceptions. Outcomes of deliveries are values (see `outcomes`); these are for
what stops a command.

    DispatcherError
    ├── ConfigError            bad configuration: exit 2, lists every problem with file and path
    ├── TransientError         may pass if tried again later (broker unreachable, ...)
    │   ├── BrokerUnavailableError
    │   └── CommitFailedError  an offset commit the broker refused or did not answer
    └── PermanentError         will not pass by waiting (a topic that does not exist, ...)

Errors carry context (partner, topic, partition, offset) and never a token.
"""

from __future__ import annotations

from dataclasses import dataclass


class DispatcherError(Exception):
    """Root of the dispatcher's exceptions."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One configuration problem: where it is and what is allowed."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}"


class ConfigError(DispatcherError):
    """The configuration is invalid; nothing is consumed."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


class TransientError(DispatcherError):
    """A failure that may pass if the same thing is tried again later."""


class BrokerUnavailableError(TransientError):
    """Kafka could not be reached."""


class CommitFailedError(TransientError):
    """Committing offsets failed; the same offsets are committed again later."""


class PermanentError(DispatcherError):
    """A failure that waiting will not mend."""
