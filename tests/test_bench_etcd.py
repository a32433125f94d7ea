"""The kv benchmark's etcd cluster: members talk over TLS unless asked for plain links.

Real etcd processes (Debian package etcd-server); skipped where etcd is not installed.
Every process is killed and reaped in `finally`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks.kv import HttpClient, _etcd_ready, _start_etcd

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed")]


@pytest.mark.parametrize(("peers", "scheme"), [("tls", "https://"), ("plain", "http://")])
async def test_etcd_members_use_the_asked_peer_links(tmp_path: Path, peers: str, scheme: str) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = _start_etcd(tmp_path, procs, peers)
        await _etcd_ready(ports[0])  # a put: the three members formed a quorum over those links
        client = HttpClient(ports[1])
        await client.connect()
        try:
            members = (await client.post("/v3/cluster/member/list", {}))["members"]
        finally:
            await client.aclose()
        urls = [u for m in members for u in m["peerURLs"]]
        assert len(members) == 3
        assert urls and all(u.startswith(scheme) for u in urls), urls
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
