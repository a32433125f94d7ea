"""One error hierarchy for meshcore.

Local misuse raises; remote garbage raises `DecodeError` (or a `RemoteProtocolError`
subclass) inside the library, where it is counted and dropped, never propagated into the
application.  Every message says what was wrong and, where there is one, what to do.
"""

from __future__ import annotations

__all__ = [
    "MeshError",
    "ConfigError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "DecodeError",
    "SecurityError",
    "CredentialError",
]


class MeshError(Exception):
    """Base class of every error meshcore raises on purpose."""


class ConfigError(MeshError, ValueError):
    """A configuration value, CLI argument or config file is invalid."""


class LocalProtocolError(MeshError):
    """The caller used an API wrongly (a bug on this side)."""


class RemoteProtocolError(MeshError):
    """A peer sent something that breaks the protocol. Counted and dropped."""


class DecodeError(RemoteProtocolError):
    """Bytes from the network (or a file) are not a valid meshcore message.

    This is the only exception `meshcore.wire.decode*` raises, whatever the input.
    """


class SecurityError(RemoteProtocolError):
    """Authentication, admission or integrity failed for data from a peer."""


class CredentialError(MeshError):
    """A local key, certificate or authority file is missing, unreadable, expired or
    does not match; the message names the file and the fix."""
