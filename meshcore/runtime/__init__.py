"""meshcore.runtime: the trio drivers that run the I/O-free cores on real sockets.

- `Transport` (datagrams + streams) with `UdpTcpTransport` (real) and `MemoryNetwork`
  (in-memory, for tests on virtual time);
- the seams the security layer fills: `DatagramSealer` (one seal/open for every datagram)
  and `StreamWrapper` (turns every stream into a `MessageStream`);
- `StreamIO`: the links' byte I/O straight on a socket's descriptor (see `_fastio`);
- `Driver`: one task that owns the SWIM core and turns its effects into I/O and timers;
- `no_wakeup_preemption`: SCHED_BATCH for the calling thread (the agent's, the store's).
"""

from ._driver import Core, Driver, DriverLimits, DriverStatistics
from ._fastio import StreamIO
from ._memory import MemoryNetwork, MemoryTransport
from ._net import UdpTcpTransport, open_udp_tcp_transport
from ._seams import (
    DatagramSealer,
    FramedStream,
    MessageStream,
    PlainSealer,
    SealerStatistics,
    StreamWrapper,
    plain_stream_wrapper,
)
from ._timers import TimerHeap
from ._transport import CountingStream, StreamHandler, Transport, TransportStatistics
from ._wal_syncer import no_wakeup_preemption

__all__ = [
    "Core",
    "CountingStream",
    "DatagramSealer",
    "Driver",
    "DriverLimits",
    "DriverStatistics",
    "FramedStream",
    "MemoryNetwork",
    "MemoryTransport",
    "MessageStream",
    "PlainSealer",
    "SealerStatistics",
    "StreamHandler",
    "no_wakeup_preemption",
    "StreamIO",
    "StreamWrapper",
    "TimerHeap",
    "Transport",
    "TransportStatistics",
    "UdpTcpTransport",
    "open_udp_tcp_transport",
    "plain_stream_wrapper",
]
