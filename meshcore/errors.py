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
    "ClockSkewError",
    "NamespaceError",
    "RecordError",
    "PlacementError",
    "StorageError",
    "ConsistencyError",
    "HandoffPending",
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


class ClockSkewError(RemoteProtocolError):
    """A peer's hybrid-clock stamp is further ahead of local wall time than the allowed
    skew: its clock (or ours) is wrong; fix NTP on the node named in the message."""


class NamespaceError(LocalProtocolError, ValueError):
    """A namespace spec is invalid, or an operation names a namespace that is not defined."""


class RecordError(LocalProtocolError, ValueError):
    """A key or value has the wrong type or exceeds its size limit."""


class PlacementError(MeshError):
    """A key cannot be placed: too few eligible sites inside the namespace's territory.
    The message names the namespace, the territory and the eligible sites."""


class StorageError(MeshError):
    """The local store failed (disk full, I/O error, corrupt file) or is closed."""


class ConsistencyError(MeshError):
    """A key-value request could not reach its consistency level (replicas down, refused,
    or the timeout passed). The message says how many acknowledgements were needed, which
    arrived and why the others did not; a failed write may still be visible later."""


class HandoffPending(ConsistencyError):
    """A range hand-off cannot move a copy yet: it is older than the hint TTL (too old to
    push, so that nothing brings back a purged delete) and no home replica holds it or a
    newer version. The copy stays; anti-entropy among the home replicas normally fixes it."""
