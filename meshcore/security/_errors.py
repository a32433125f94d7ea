"""Security errors, all `SecurityError` subclasses (remote input) or `CredentialError` (local).

Every error raised for remote input carries `reason`, the name of the drop counter it
increments, so one except-clause can count it and log one line.
"""

from __future__ import annotations

from ..errors import SecurityError

__all__ = ["HandshakeError", "CertificateError", "FrameError"]


class _Reasoned(SecurityError):
    default_reason = "security_error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or self.default_reason


class HandshakeError(_Reasoned):
    """The Noise handshake failed: bad message, bad MAC, or a peer that does not bind its
    static key to its certified identity."""

    default_reason = "handshake_failed"


class CertificateError(_Reasoned):
    """A peer's certificate is malformed, signed by an untrusted authority, outside its
    validity window, for another cluster, or revoked (`reason` says which)."""

    default_reason = "cert_invalid"


class FrameError(_Reasoned):
    """A stream frame is malformed, too large, forged, or arrives past the rekey limit."""

    default_reason = "frame_invalid"
