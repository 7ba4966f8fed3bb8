"""The one error hierarchy of aidlink.

Every error knows its process exit code; the CLIs have one wrapper that prints
``Error: <message>`` to stderr and exits with it.  Messages name a file, a row,
a column and the rule broken -- never a record's value.

Exit codes (also documented in docs/errors.md):

==== =========================== ==============================================
code class                        meaning
==== =========================== ==============================================
1    AidlinkError                 unexpected failure (a bug: please report it)
2    (click usage error)          wrong command-line usage
3    ConfigError                  a schema, mapping, roster, rule or run config
                                  document is invalid (every problem listed)
4    InputError                   a data file cannot be read as a table
5    MissingColumnError           a mapped column is not in the file
6    DuplicateHeaderError         two columns share a header
7    EmptyInputError              the file has no header or no data rows
8    EncodingDetectionError       the text encoding is wrong or undetectable
9    MixedEncodingError           the file mixes text encodings
10   CellTooLargeError            a cell exceeds the size limit
11   SheetSelectionError          an XLSX has several sheets and none was chosen
12   FormulaCellError             an XLSX holds formula cells (not values)
13   SchemaMismatchError          mapping and linkage schema disagree
14   PassphraseError              the passphrase does not open the key file
15   RosterError                  roster expired, not yet valid, or party absent
16   OutputExistsError            output path exists and --force was not given
17   FingerprintMismatchError     packages were made with different schemas/secrets
18   ReplayError                  a package id was seen before
20   IntegrityError               a package or file failed authentication (opaque)
21   RuleError                    a rule set is invalid or uses a forbidden attribute
22   StateError                   an operation is out of order (e.g. match before ingest)
23   AuditLogError                the audit log's chain is broken (position and kind
                                  named), or an entry cannot be appended
==== =========================== ==============================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class AidlinkError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Problem:
    """One problem found while validating a document: where and what."""

    path: str  # JSON path such as ``$.fields[2].filter.length``
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(AidlinkError):
    """A document failed validation; carries every problem found at once."""

    exit_code = 3

    def __init__(self, source: str, problems: Iterable[Problem | str]) -> None:
        self.source = source
        self.problems = [p if isinstance(p, Problem) else Problem("$", p) for p in problems]
        lines = "\n".join(f"  - {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(f"{source}: {n} problem{'s' if n != 1 else ''}\n{lines}")


class InputError(AidlinkError):
    """A data file cannot be read as a table (file named, never a value)."""

    exit_code = 4


class MissingColumnError(InputError):
    exit_code = 5


class DuplicateHeaderError(InputError):
    exit_code = 6


class EmptyInputError(InputError):
    exit_code = 7


class EncodingDetectionError(InputError):
    exit_code = 8


class MixedEncodingError(InputError):
    exit_code = 9


class CellTooLargeError(InputError):
    exit_code = 10


class SheetSelectionError(InputError):
    exit_code = 11


class FormulaCellError(InputError):
    exit_code = 12


class SchemaMismatchError(AidlinkError):
    exit_code = 13


class PassphraseError(AidlinkError):
    """The passphrase does not open the key file.  Deliberately says nothing more."""

    exit_code = 14

    def __init__(self, message: str = "the passphrase does not open this key file") -> None:
        super().__init__(message)


class RosterError(AidlinkError):
    exit_code = 15


class OutputExistsError(AidlinkError):
    exit_code = 16


class FingerprintMismatchError(AidlinkError):
    exit_code = 17


class ReplayError(AidlinkError):
    exit_code = 18


class IntegrityError(AidlinkError):
    """Authentication failed.  One opaque message whatever the cause, so that an
    attacker learns nothing from which check failed (cf. Fernet's InvalidToken)."""

    exit_code = 20

    def __init__(self, message: str = "integrity check failed: the file is not authentic") -> None:
        super().__init__(message)


class RuleError(ConfigError):
    """A rule set is invalid (every problem listed, like ConfigError), or a run's
    clues do not fit the rule set (a plain message)."""

    exit_code = 21

    def __init__(self, source: str, problems: Iterable[Problem | str] | None = None) -> None:
        if problems is None:
            self.source, self.problems = "", []
            AidlinkError.__init__(self, source)
        else:
            super().__init__(source, problems)


class StateError(AidlinkError):
    exit_code = 22


class AuditLogError(AidlinkError):
    """The audit log is broken or cannot be appended to.  Unlike IntegrityError it says where and
    how (position and kind, see :mod:`linkage.audit`) -- a log is checked by its owner and its
    reviewer, not an attacker's oracle -- but never quotes an entry."""

    exit_code = 23

    def __init__(self, message: str, *, position: int | None = None, kind: str | None = None) -> None:
        super().__init__(message)
        self.position = position
        self.kind = kind

    def details(self) -> dict[str, object]:
        """Extra fields for the --json error object."""
        return {k: v for k, v in (("position", self.position), ("kind", self.kind)) if v is not None}


EXIT_CODES: dict[str, int] = {
    cls.__name__: cls.exit_code
    for cls in (
        AidlinkError, ConfigError, InputError, MissingColumnError, DuplicateHeaderError,
        EmptyInputError, EncodingDetectionError, MixedEncodingError, CellTooLargeError,
        SheetSelectionError, FormulaCellError, SchemaMismatchError, PassphraseError,
        RosterError, OutputExistsError, FingerprintMismatchError, ReplayError,
        IntegrityError, RuleError, StateError, AuditLogError,
    )
}
