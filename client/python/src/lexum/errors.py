"""The SDK's errors, classified from gRPC status codes like the Rust SDK's
`ClientError`: a user mistake (`RejectedError`, `NotFoundError`,
`UnauthenticatedError`, `ConfigError`, `TlsError`) is told apart from a
cluster that cannot answer (`UnavailableError`)."""

from __future__ import annotations

import re
from collections.abc import Iterable

import grpc

#: Metadata key carrying a diagnostic code (`E011`, `E002`, ...) on errors.
CODE_METADATA_KEY = "lexum-code"
#: Response metadata key carrying the leader's client address on redirects.
LEADER_METADATA_KEY = "lexum-leader"
#: Metadata key of a RESOURCE_EXHAUSTED status: milliseconds to wait before
#: trying again (a node's `[limits]`).
RETRY_AFTER_METADATA_KEY = "retry-after-ms"
#: Longest wait a node's hint may ask for, in seconds (longer is cut).
MAX_RETRY_AFTER = 30.0

_LEADING_CODE = re.compile(r"^([EW][0-9]{3}):")


class LexumError(Exception):
    """Base of every error the SDK raises."""

    #: Whether the request itself was at fault (bad program, unknown name,
    #: wrong type, rejected mutation, bad token or configuration).
    user_error = False

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The diagnostic code (`E011`, ...) when the node sent one.
        self.code = code


class ConfigError(LexumError):
    """An endpoint, token or TLS setting could not be used."""

    user_error = True


class TlsError(ConfigError):
    """No node could be reached over TLS with these settings: the CA does not
    sign the nodes' certificates, a certificate does not name the node, the
    node does not serve TLS, or it demands a client certificate that was not
    given or that its CA did not sign. Trying again cannot help."""


class RejectedError(LexumError):
    """The cluster refused the request because of its content: a compile
    error, an invariant violation (E011), a type mismatch (E003). Nothing
    was committed."""

    user_error = True


class NotFoundError(LexumError):
    """Something named in the request does not exist (unknown domain, member)."""

    user_error = True


class UnauthenticatedError(LexumError):
    """The token was missing or wrong."""

    user_error = True


class UnavailableError(LexumError):
    """No node answered, or no quorum, within the deadline."""


class RpcError(LexumError):
    """Any other gRPC failure."""


def metadata_value(metadata: object, key: str) -> str | None:
    """The first value of `key` in gRPC metadata (any iterable of pairs)."""
    if metadata is None:
        return None
    try:
        pairs = list(metadata)  # type: ignore[call-overload]
    except TypeError:
        return None
    for pair in pairs:
        if isinstance(pair, tuple) and len(pair) == 2 and pair[0] == key:
            value = pair[1]
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def status_metadata(error: grpc.RpcError, key: str) -> str | None:
    """`key` from a failed call's trailers (or, failing that, its headers)."""
    for getter in ("trailing_metadata", "initial_metadata"):
        method = getattr(error, getter, None)
        if method is None:
            continue
        try:
            value = metadata_value(method(), key)
        except Exception:  # a call that never got headers
            value = None
        if value is not None:
            return value
    return None


def _code(error: grpc.RpcError) -> grpc.StatusCode:
    code = getattr(error, "code", None)
    result = code() if callable(code) else None
    return result if isinstance(result, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _details(error: grpc.RpcError) -> str:
    details = getattr(error, "details", None)
    result = details() if callable(details) else None
    return result if isinstance(result, str) else ""


def describe(error: grpc.RpcError) -> str:
    """A short description of a status for error messages."""
    first = _details(error).split("\n", 1)[0]
    return first or _code(error).name


def retry_after(error: grpc.RpcError) -> float | None:
    """Seconds a node over one of its `[limits]` asked the caller to wait:
    a RESOURCE_EXHAUSTED status with `retry-after-ms` metadata. The node
    refused the call before running it, so trying again is always safe."""
    if _code(error) != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    value = status_metadata(error, RETRY_AFTER_METADATA_KEY)
    if value is None:
        return None
    try:
        millis = int(value.strip())
    except ValueError:
        return None
    return min(max(millis, 0) / 1000.0, MAX_RETRY_AFTER)


def is_transient(error: grpc.RpcError) -> bool:
    """Whether a status is worth retrying on another node after a pause."""
    code = _code(error)
    if retry_after(error) is not None:
        return True
    if code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNKNOWN,
    ):
        return True
    if code == grpc.StatusCode.INTERNAL and _details(error) == "Internal error from Core":
        # gRPC Python's own failure of a call (a stream the node closed while
        # the client was writing to it), not a status the node sent.
        return True
    return code == grpc.StatusCode.FAILED_PRECONDITION and _details(error).startswith("not the leader")


def from_rpc_error(error: grpc.RpcError) -> LexumError:
    """Classifies a final gRPC status (after retries and redirects)."""
    message = _details(error).rstrip()
    code = _code(error)
    diagnostic = status_metadata(error, CODE_METADATA_KEY)
    if diagnostic is None:
        match = _LEADING_CODE.match(message)
        diagnostic = match.group(1) if match else None
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.ALREADY_EXISTS):
        return RejectedError(message, diagnostic)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(message, diagnostic)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return UnauthenticatedError(f"not authenticated: {message}")
    if code == grpc.StatusCode.FAILED_PRECONDITION and not message.startswith("not the leader"):
        return RejectedError(message, diagnostic)
    if code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.CANCELLED,
    ):
        return UnavailableError(f"cluster unavailable: {message or code.name}")
    return RpcError(f"request failed: {code.name}: {message}")


#: What gRPC says when a TLS handshake fails, and what it means.
_TLS_FAILURES = (
    (
        "Hostname Verification Check failed",
        "the node's certificate does not name the host it was reached by (see TlsOptions.domain)",
    ),
    (
        "Tls handshake failed",
        "the TLS handshake failed: the node's certificate is not signed by TlsOptions.ca_pem, "
        "or the node does not serve TLS",
    ),
    (
        "TSI_DATA_CORRUPTED",
        "the node refused the TLS connection: it demands a client certificate signed by its CA "
        "(TlsOptions.cert_pem and key_pem)",
    ),
)


def tls_failure(error: grpc.RpcError) -> str | None:
    """What went wrong when a call failed because the TLS handshake with its
    node did, else None."""
    if _code(error) != grpc.StatusCode.UNAVAILABLE:
        return None
    details = _details(error)
    for needle, meaning in _TLS_FAILURES:
        if needle in details:
            return f"{meaning} ({details.rsplit('last error: ', 1)[-1]})"
    return None


class TlsFailures:
    """Which endpoints' TLS handshakes failed, in one call or session. A
    failed handshake is retried on other nodes like any unreachable node,
    but once every endpoint's has failed the settings are wrong, and
    waiting out the deadline would only hide that."""

    def __init__(self, endpoints: Iterable[str]) -> None:
        self._endpoints = set(endpoints)
        self._failed: dict[str, str] = {}

    def note(self, address: str, failure: str | None) -> TlsError | None:
        """Notes how an attempt at `address` failed (`tls_failure`; None for
        any other way); returns the error to raise when every endpoint has
        failed its TLS handshake."""
        if failure is None:
            self._failed.pop(address, None)
            return None
        self._failed[address] = failure
        if not self._endpoints <= self._failed.keys():
            return None
        return TlsError(f"TLS with {', '.join(sorted(self._endpoints))} failed: {failure}")

    def clear(self) -> None:
        """Forgets every failure (a node answered)."""
        self._failed.clear()
