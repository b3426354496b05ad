"""The small set of Kubernetes API failures the extender acts on, mapped from any client error.

The binder and the watch both raise these, so callers decide on four cases (a conflict, a
missing object, a timeout whose write may still land, anything else) instead of on the
client library's exception types.
"""

from __future__ import annotations

import json

import urllib3
from kubernetes.client.exceptions import ApiException


class KubeError(Exception):
    """A failed Kubernetes API call; `status` is the HTTP status (0 when none came back)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message


class Conflict(KubeError):
    """409: the pod was already bound, or its uid is not the one we decided for."""


class NotFound(KubeError):
    """404: the pod (or PodGroup) does not exist (any more)."""


class Timeout(KubeError):
    """No answer in time; the write may or may not have happened."""


class ApiError(KubeError):
    """Any other failure: another HTTP status, or the connection failed."""


def status_message(body: bytes | str | None, fallback: str) -> str:
    """The `message` of a metav1.Status body, else `fallback`."""
    if body:
        try:
            data = json.loads(body)
            if isinstance(data, dict) and data.get("message"):
                return str(data["message"])
        except (TypeError, ValueError):
            pass
    return fallback


def error_for_status(status: int, msg: str) -> KubeError:
    """The KubeError for an HTTP error status; `msg` already says what was being done."""
    if status == 409 or (status == 422 and "metadata.uid" in msg):
        # A uid precondition is reported as 409 (storage precondition) by the apiserver;
        # a 422 "field is immutable" on metadata.uid means the same to us.
        return Conflict(status, msg)
    if status == 404:
        return NotFound(status, msg)
    if status == 504:
        return Timeout(status, msg)
    return ApiError(status, msg)


def map_error(e: BaseException, what: str) -> KubeError:
    """The small exception set for an API client error while doing `what`."""
    if isinstance(e, KubeError):
        return e
    if isinstance(e, ApiException):
        status = int(getattr(e, "status", 0) or 0)
        fallback = str(getattr(e, "reason", "") or e)
        message = status_message(getattr(e, "body", None), fallback)
        return error_for_status(status, f"{what}: {message}")
    if isinstance(e, urllib3.exceptions.TimeoutError | TimeoutError):
        return Timeout(0, f"{what}: timed out ({e})")
    if isinstance(e, urllib3.exceptions.MaxRetryError) and isinstance(
            e.reason, urllib3.exceptions.TimeoutError):
        return Timeout(0, f"{what}: timed out ({e.reason})")
    return ApiError(0, f"{what}: {type(e).__name__}: {e}")
