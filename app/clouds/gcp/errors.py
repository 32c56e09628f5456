"""Translate Compute Engine failures into CloudError; one function decides what is transient."""

from __future__ import annotations

import re
from collections.abc import Iterable

from app.errors import CloudError

AUTH_HINT = (
    "run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS to a "
    "service-account key file) and check that the account may use Compute Engine in the project"
)
# Error codes/reasons that mean "try again later or in another zone" (compared case- and
# underscore-insensitively: operations say QUOTA_EXCEEDED, HTTP errors say quotaExceeded).
_TRANSIENT_REASONS = {
    "quotaexceeded",
    "zoneresourcepoolexhausted",
    "zoneresourcepoolexhaustedwithdetails",
    "ratelimitexceeded",
    "userratelimitexceeded",
    "resourcenotready",
    "resourceoperationratelimit",
}
# How Compute Engine says that a zone has no machine type of that name: a 400 for the insert's
# machineType field, or a 404 for the machine type resource.
_UNKNOWN_MACHINE_TYPE = (
    re.compile(
        r"Machine type with name '(?P<name>[^']+)' does not exist in zone '(?P<zone>[^']+)'"
    ),
    re.compile(r"zones/(?P<zone>[^/'\s]+)/machineTypes/(?P<name>[^/'\s]+)' was not found"),
)
_QUOTA_REASONS = {"quotaexceeded"}
_CAPACITY_REASONS = {"zoneresourcepoolexhausted", "zoneresourcepoolexhaustedwithdetails"}


class UnknownMachineTypeError(CloudError):
    """A zone does not offer the machine type asked for (another zone of the pool may)."""

    def __init__(self, message: str, *, machine_type: str, zone: str) -> None:
        super().__init__(message, transient=False)
        self.machine_type = machine_type
        self.zone = zone


def _unknown_machine_type(status: int | None, detail: str) -> tuple[str, str] | None:
    """(machine type, zone) when this failure says the zone has no such machine type."""
    if status not in (400, 404):
        return None
    for pattern in _UNKNOWN_MACHINE_TYPE:
        if match := pattern.search(detail):
            return match["name"], match["zone"]
    return None


def _normalise(reason: str) -> str:
    return reason.replace("_", "").lower()


def is_transient(status: int | None, reasons: Iterable[str]) -> bool:
    """Whether a failure with this HTTP status and these error reasons is worth retrying."""
    if any(_normalise(r) in _TRANSIENT_REASONS for r in reasons):
        return True
    return status is not None and (status == 429 or status >= 500)


def cloud_error(
    status: int | None, reasons: Iterable[str], detail: str, *, doing: str, zone: str | None
) -> CloudError:
    """Build the CloudError for one failure, with a message that says what to do."""
    reasons = [r for r in reasons if r]
    normalised = {_normalise(r) for r in reasons}
    where = f" in zone {zone}" if zone else ""
    code = f" [{', '.join(reasons)}]" if reasons else ""
    head = f"Compute Engine could not {doing}{where}: {detail}{code}"
    if (unknown := _unknown_machine_type(status, detail)) is not None:
        name, unknown_zone = unknown
        return UnknownMachineTypeError(
            f"{head} (zone {unknown_zone} does not offer machine type {name})",
            machine_type=name,
            zone=unknown_zone,
        )
    if normalised & _QUOTA_REASONS:
        hint = (
            "quota exceeded; request more quota in the Cloud console (IAM & Admin → Quotas), "
            "use a smaller machine type or another region; LabBatch will back off and retry"
        )
    elif normalised & _CAPACITY_REASONS:
        hint = "the zone is out of capacity for this machine type; LabBatch will try another zone"
    elif status in (401, 403):
        hint = f"the credentials were refused; {AUTH_HINT}"
    elif status == 404:
        hint = "check the project, zone, machine type and image names"
    elif status == 400:
        hint = "the request was refused as invalid; check the machine type, image and labels"
    elif is_transient(status, reasons):
        hint = "Compute Engine is busy or unavailable; LabBatch will back off and retry"
    else:
        hint = "see the message above"
    return CloudError(f"{head} ({hint})", transient=is_transient(status, reasons))


def cloud_failures() -> tuple[type[BaseException], ...]:
    """The exception types that are the cloud's failures (anything else is our bug)."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    return (gexc.GoogleAPIError, auth_exc.GoogleAuthError, OSError)


def translate(exc: BaseException, *, doing: str, zone: str | None = None) -> CloudError:
    """Turn a google-api-core / google-auth exception into a CloudError (raise it ``from exc``)."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, auth_exc.DefaultCredentialsError | auth_exc.RefreshError):
        return CloudError(
            f"Compute Engine could not {doing}: no usable Google credentials ({exc}); {AUTH_HINT}",
            transient=False,
        )
    if isinstance(exc, gexc.GoogleAPICallError):
        reasons: list[str] = []
        for err in exc.errors or []:
            if isinstance(err, dict):
                reasons.append(str(err.get("reason") or err.get("code") or ""))
        if exc.reason:
            reasons.append(exc.reason)
        return cloud_error(exc.code, reasons, exc.message, doing=doing, zone=zone)
    if isinstance(exc, OSError | gexc.RetryError):
        return CloudError(
            f"Compute Engine could not {doing}: the API is unreachable ({exc}); check the "
            "network connection; LabBatch will back off and retry",
            transient=True,
        )
    return CloudError(f"Compute Engine could not {doing}: {exc}", transient=False)
