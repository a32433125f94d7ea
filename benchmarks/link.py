"""`python -m benchmarks link`: handshakes, stream and datagram sealing throughput.

All figures from one run: full identity-checked XX handshakes (both sides in this process,
certificate and binding checks included, their caches warm) against the `noiseprotocol`
package's plain XX in the same loop; 64 KiB AEAD frames sealed then opened in memory (one
core) against the same frames streamed over loopback TCP from this process to a receiver
process; sealed datagrams (seal + open) and their overhead.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from typing import Any

FRAME_BYTES = 64 * 1024
NOW = 1_700_000_000.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--handshakes", type=int, default=2000, help="handshakes per method")
    parser.add_argument("--frames", type=int, default=2000, help="64 KiB frames per throughput test")
    parser.add_argument("--datagrams", type=int, default=50_000, help="datagram seal+open pairs")


def _our_handshakes(n: int) -> float:
    from meshcore.security import handshake_pair, make_throwaway_cluster

    a, b = make_throwaway_cluster(["a", "b"], now=NOW).nodes
    sa, sb = a.link_security(), b.link_security()
    handshake_pair(sa, sb, now=NOW)  # warm the verified-certificate caches
    t0 = time.perf_counter()
    for _ in range(n):
        handshake_pair(sa, sb, now=NOW)
    return n / (time.perf_counter() - t0)


def _noiseprotocol_handshakes(n: int) -> float:
    from noise.connection import Keypair, NoiseConnection

    name = b"Noise_XX_25519_ChaChaPoly_BLAKE2b"
    s_i, s_r = os.urandom(32), os.urandom(32)
    t0 = time.perf_counter()
    for _ in range(n):
        i, r = NoiseConnection.from_name(name), NoiseConnection.from_name(name)
        i.set_as_initiator()
        r.set_as_responder()
        i.set_keypair_from_private_bytes(Keypair.STATIC, s_i)
        r.set_keypair_from_private_bytes(Keypair.STATIC, s_r)
        i.set_prologue(b"bench")
        r.set_prologue(b"bench")
        i.start_handshake()
        r.start_handshake()
        r.read_message(i.write_message())
        i.read_message(r.write_message())
        r.read_message(i.write_message())
        assert i.handshake_finished and r.handshake_finished
    return n / (time.perf_counter() - t0)


def _aead(frames: int) -> float:
    from meshcore.security import FrameDecoder, FrameEncoder, handshake_pair, make_throwaway_cluster

    a, b = make_throwaway_cluster(["a", "b"], now=NOW).nodes
    ra, rb = handshake_pair(a.link_security(), b.link_security(), now=NOW)
    enc, dec = FrameEncoder(ra.send, 0.0), FrameDecoder(rb.receive, 0.0)
    payload = os.urandom(FRAME_BYTES)
    t0 = time.perf_counter()
    for _ in range(frames):
        dec.receive_data(enc.seal(payload, 0.0))
        assert dec.next_message(0.0) is not None
    return frames * FRAME_BYTES / (time.perf_counter() - t0) / 1e6


def _receiver(conn: Any, material: dict[str, Any], frames: int) -> None:
    import trio

    from meshcore.runtime._securelink import secure_handshake

    security = _security_from(material)

    async def main() -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        conn.send(listeners[0].socket.getsockname()[1])
        stream = await listeners[0].accept()
        link = await secure_handshake(stream, security, initiator=False, wall_clock=lambda: NOW)
        for _ in range(frames):
            await link.receive_message()
        await link.send_message(b"done")
        await link.aclose()

    trio.run(main)


def _security_from(material: dict[str, Any]) -> Any:
    from meshcore.security import (
        AuthorityPublic,
        LinkSecurity,
        SigningKey,
        TrustStore,
        decode_certificate,
    )

    trust = TrustStore([AuthorityPublic(material["cluster"], material["authority"])])
    return LinkSecurity(SigningKey(material["seed"]), decode_certificate(material["cert"]), trust)


def _stream(frames: int) -> float:
    import trio

    from meshcore.runtime._securelink import secure_handshake
    from meshcore.security import make_throwaway_cluster

    cluster = make_throwaway_cluster(["a", "b"], now=NOW)
    a, b = cluster.nodes
    material = {
        "cluster": cluster.authority.cluster,
        "authority": cluster.authority.public.public_key,
        "seed": b.key.seed,
        "cert": b.certificate.encode(),
    }
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_receiver, args=(child, material, frames))
    proc.start()
    try:
        port = parent.recv()
        payload = os.urandom(FRAME_BYTES)
        elapsed = [0.0]

        async def main() -> None:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            link = await secure_handshake(stream, a.link_security(), initiator=True, wall_clock=lambda: NOW)
            t0 = time.perf_counter()
            for _ in range(frames):
                await link.send_message(payload)
            assert await link.receive_message() == b"done"
            elapsed[0] = time.perf_counter() - t0
            await link.aclose()

        trio.run(main)
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
    return frames * FRAME_BYTES / elapsed[0] / 1e6


def _datagrams(n: int) -> tuple[float, int]:
    from meshcore.security import make_throwaway_cluster

    a, b = make_throwaway_cluster(["a", "b"], now=NOW).nodes
    sa = a.datagram_sealer(counter_start=int(NOW) << 32, clock=lambda: NOW)
    sb = b.datagram_sealer(counter_start=int(NOW) << 32, clock=lambda: NOW)
    addr_a, addr_b = ("10.0.0.1", 7946), ("10.0.0.2", 7946)
    sa.add_peer(b.certificate, addr_b)
    sb.add_peer(a.certificate, addr_a)
    payload = os.urandom(200)  # a typical SWIM ping with a few piggybacked updates
    overhead = len(sa.seal(addr_b, payload)) - len(payload)
    t0 = time.perf_counter()
    for _ in range(n):
        assert sb.open(addr_a, sa.seal(addr_b, payload)) is not None
    return n / (time.perf_counter() - t0), overhead


def run(args: argparse.Namespace) -> None:
    from ._report import emit

    hs = _our_handshakes(args.handshakes)
    np_hs = _noiseprotocol_handshakes(args.handshakes)
    aead = _aead(args.frames)
    stream = _stream(args.frames)
    dgram_per_s, overhead = _datagrams(args.datagrams)
    metrics = {
        "handshakes_per_s": round(hs, 1),
        "noiseprotocol_handshakes_per_s": round(np_hs, 1),
        "handshake_ratio_vs_noiseprotocol": round(hs / np_hs, 3),
        "stream_mb_s": round(stream, 1),
        "aead_mb_s": round(aead, 1),
        "stream_over_aead_ratio": round(stream / aead, 3),
        "datagram_seal_open_per_s": round(dgram_per_s, 1),
        "datagram_overhead_bytes": overhead,
    }
    params = {
        "handshakes": args.handshakes,
        "frames": args.frames,
        "frame_bytes": FRAME_BYTES,
        "datagrams": args.datagrams,
        "cpus": os.cpu_count(),
    }
    emit("link", params, metrics, args.json)
