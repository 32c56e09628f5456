"""One error hierarchy for LabBatch.

User errors carry a message a person can act on; the CLI and the GUI show them plainly.
Anything else is an internal error: logged with its traceback, shown as a short message.
"""

from __future__ import annotations


class LabBatchError(Exception):
    """Base of every error LabBatch raises on purpose."""


class UserError(LabBatchError):
    """Something the user can fix: a bad file, a bad setting, an unknown batch."""

    exit_code = 1


class InvalidInputError(UserError):
    """Input that failed validation; nothing was written."""

    exit_code = 2


class NotFoundError(UserError):
    """A batch, job, pool or instance that does not exist."""


class ConfigError(UserError):
    """A bad setting: database URL, user name, pool configuration."""

    exit_code = 2


class CloudError(UserError):
    """A cloud refused or failed a request (credentials, quota, capacity)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class InternalError(LabBatchError):
    """A bug or an unexpected state: logged in full, shown briefly."""
