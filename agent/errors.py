"""The agent's error tree, every class of it in this one module.

AgentError
 ├── ConfigError                 a user's mistake in a config or profile file (exit code 2)
 ├── BusUrlError                 a bus URL on the command line that cannot be used (ValueError too)
 ├── LedgerError                 the ledger cannot be opened or written; polling goes on
 │    └── LedgerLockedError      another agent keeps this ledger
 └── DriveError                  a drive or bus failed to answer sensibly; counted, never fatal
      ├── DriveTimeoutError      no answer in time (TimeoutError too)
      ├── DriveConnectionError   could not connect, or the connection dropped
      ├── DriveReplyError        the drive answered with a Modbus exception code
      │    └── UnknownReplyError     with a code outside the specification
      ├── DriveProtocolError     a malformed or mismatched reply
      │    └── LineNoiseError        an RTU reply with a bad CRC
      └── ImplausibleReadingError  an answer whose values cannot be real
           └── StuckReadingError     a running drive's values frozen

Each DriveError carries a ``kind`` that becomes the ``kind`` label of
``vfd_poll_errors_total``, so the label set stays small and bounded.
"""

from __future__ import annotations

from dataclasses import dataclass


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file, located for the user."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class ConfigError(AgentError):
    """Every problem found in a config and its profiles, reported at once."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.file, i.line, i.field))
        super().__init__("\n".join(str(i) for i in self.issues))


class DriveError(AgentError):
    """A failed exchange with one drive."""

    kind = "other"


class DriveTimeoutError(DriveError, TimeoutError):
    """The drive did not answer within the bus timeout."""

    kind = "timeout"


class DriveConnectionError(DriveError, ConnectionError):
    """The bus connection could not be made or was lost."""

    kind = "connection"


class DriveReplyError(DriveError):
    """The drive answered with a Modbus exception code."""

    def __init__(self, function_code: int, exception_code: int) -> None:
        self.function_code = function_code
        self.exception_code = exception_code
        super().__init__(f"function {function_code}: Modbus exception code {exception_code}")

    @property
    def kind(self) -> str:  # type: ignore[override]
        return f"exception_{self.exception_code}"


class DriveProtocolError(DriveError):
    """The reply could not be used: wrong length, wrong id, undecodable."""

    kind = "protocol"


class UnknownReplyError(DriveReplyError):
    """An exception reply with a code outside the Modbus specification."""

    kind = "exception_other"


class LineNoiseError(DriveProtocolError):
    """An RTU reply arrived with a bad CRC: noise on the line, not a silent drive."""

    kind = "crc"


class ImplausibleReadingError(DriveError):
    """The drive answered, but a value cannot be real; it is not used."""

    kind = "implausible"


class StuckReadingError(ImplausibleReadingError):
    """Every value of a running drive has stayed identical for too long: the drive's data is frozen."""

    kind = "stuck"


class BusUrlError(AgentError, ValueError):
    """A bus URL that cannot be used; the message says why."""


class LedgerError(AgentError):
    """The ledger cannot be opened or written; polling and metrics go on without it."""


class LedgerLockedError(LedgerError):
    """Another agent already keeps this ledger."""
