"""Translate Azure SDK exceptions into LabBatch cloud errors (the one place deciding transience)."""

from __future__ import annotations

import re

from app.errors import CloudError

# Azure error codes meaning "no capacity for this size here right now": retry later or elsewhere.
ALLOCATION_CODES = frozenset(
    {
        "AllocationFailed",
        "ZonalAllocationFailed",
        "OverconstrainedAllocationRequest",
        "OverconstrainedZonalAllocationRequest",
        "SkuNotAvailable",
    }
)
QUOTA_CODES = frozenset({"QuotaExceeded", "OperationNotAllowed"})
LOGIN_HINT = (
    "Sign in with `az login` (LabBatch uses DefaultAzureCredential: Azure CLI, environment "
    "variables or a managed identity) and check the subscription id."
)

FORBIDDEN_HINT = (
    "Grant the signed-in identity the Virtual Machine Contributor and Network Contributor roles "
    "on the resource group (each VM makes its own network interface and public IP)."
)


# ARM's answer to a size it does not know ends with every size of the region: hundreds of names.
_SIZE_LIST = re.compile(
    r"\s*The (?:valid )?sizes (?:available )?in the current region are:.*", re.S
)


class UnknownVmSizeError(CloudError):
    """Azure does not know the VM size, or does not offer it in the location (lasting)."""


def _is_unknown_vm_size(code: str, target: str, message: str) -> bool:
    if code != "InvalidParameter":
        return False
    return target.lower().endswith("vmsize") or bool(re.search(r"vm ?size", message, re.I))


def _error_code(exc: BaseException) -> str:
    """The ARM error code of an HttpResponseError, or '' when there is none."""
    error = getattr(exc, "error", None)
    return str(getattr(error, "code", "") or "")


def _error_message(exc: BaseException) -> str:
    """The ARM error message of an HttpResponseError, falling back to the exception text."""
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None)
    return str(message or exc).strip()


def translate_error(
    exc: BaseException, action: str, *, forbidden_hint: str = FORBIDDEN_HINT
) -> CloudError:
    """Turn an Azure SDK exception raised while doing `action` into a CloudError;
    ``forbidden_hint`` says what to do about a 403."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    if isinstance(exc, ClientAuthenticationError):
        return CloudError(f"Azure refused the credentials while {action}. {LOGIN_HINT}")
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return CloudError(
            f"Could not reach Azure while {action} ({exc}); check the network. Will retry.",
            transient=True,
        )
    if not isinstance(exc, HttpResponseError):
        return CloudError(f"Azure failed while {action}: {exc}")
    code, message, status = _error_code(exc), _error_message(exc), exc.status_code or 0
    if code in QUOTA_CODES and "quota" in message.lower():
        return CloudError(
            f"Azure quota exceeded while {action}: {message} "
            "Request a quota increase (Azure portal → Subscriptions → Usage + quotas) "
            "or pick another VM size or region. Will retry.",
            transient=True,
        )
    if code in ALLOCATION_CODES:
        return CloudError(
            f"Azure has no capacity for this VM size while {action} ({code}): {message} "
            "Try another VM size, zone or region. Will retry.",
            transient=True,
        )
    if _is_unknown_vm_size(code, str(getattr(exc.error, "target", "") or ""), message):
        return UnknownVmSizeError(
            f"Azure does not offer the VM size while {action} ({code}): "
            f"{_SIZE_LIST.sub('', message)}"
        )
    if status == 401:
        return CloudError(f"Azure refused the credentials while {action}. {LOGIN_HINT}")
    if status == 403:
        return CloudError(
            f"Azure denied permission while {action} ({code}): {message} {forbidden_hint}"
        )
    if status == 429 or status >= 500:
        return CloudError(
            f"Azure is busy or failing while {action} ({status} {code}): {message} Will retry.",
            transient=True,
        )
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        return CloudError(
            f"Azure could not find a resource while {action} ({code}): {message} "
            "Check the subscription, resource group, location and subnet."
        )
    return CloudError(f"Azure refused the request while {action} ({code or status}): {message}")
