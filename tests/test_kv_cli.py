"""The kv control-socket ops inside one running node (real sockets), and CLI parsing."""

from __future__ import annotations

import base64
from pathlib import Path

import trio
from test_kv_node import kv_mesh, wait_for_namespace

from meshcore.cli.__main__ import build_parser
from meshcore.cli._control import request_sync, serve_control


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def ask(path: Path, op: str, **fields: object) -> dict[str, object]:
    import json
    import socket

    def run() -> dict[str, object]:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(str(path))
            s.sendall(json.dumps({**fields, "op": op}).encode() + b"\n")
            return json.loads(s.makefile("rb").readline())  # type: ignore[no-any-return]
        finally:
            s.close()

    return await trio.to_thread.run_sync(run)


async def test_control_ops_put_get_list_and_refuse_bad_requests(tmp_path: Path) -> None:
    async with kv_mesh(tmp_path, ["a", "b"]) as mesh:
        a = mesh.nodes["a"]
        path = tmp_path / "a.sock"
        await mesh.nursery.start(serve_control, path, a, lambda: None)
        created = await ask(path, "namespace.create", name="c", replicas=2)
        assert created["ok"] is True, created
        await wait_for_namespace(mesh, "c")
        assert (await ask(path, "kv.put", namespace="c", key_b64=b64(b"k"), value_b64=b64(b"\x00\xff")))["ok"]
        got = await ask(path, "kv.get", namespace="c", key_b64=b64(b"k"), consistency="all")
        assert got == {"ok": True, "found": True, "value_b64": b64(b"\x00\xff")}
        listed = await ask(path, "kv.ls", namespace="c", prefix_b64="")
        assert listed["items"] == [[b64(b"k"), b64(b"\x00\xff")]]
        for bad in ({"namespace": "c", "key_b64": "***", "value_b64": ""},
                    {"namespace": "c", "key_b64": b64(b"k"), "value_b64": b64(b"v"), "consistency": "most"},
                    {"namespace": 7, "key_b64": b64(b"k"), "value_b64": b64(b"v")}):
            answer = await ask(path, "kv.put", **bad)
            assert answer["ok"] is False and answer["error"]
        assert (await ask(path, "namespace.create", name="c", replicas=1))["ok"] is False
        names = await trio.to_thread.run_sync(lambda: request_sync(path, "namespace.list"))
        assert [ns["name"] for ns in names["namespaces"]] == ["c"]


def test_kv_commands_parse_their_arguments() -> None:
    p = build_parser()
    args = p.parse_args(["kv", "put", "ns", "key", "value", "--consistency", "all", "--control", "/x.sock"])
    assert (args.kv_command, args.namespace, args.key, args.value, args.consistency) == (
        "put", "ns", "key", "value", "all")
    args = p.parse_args(["namespace", "create", "photos", "--replicas", "3", "--regions", "a,b"])
    assert (args.name_, args.replicas, args.regions) == ("photos", 3, "a,b")
    args = p.parse_args(["kv", "ls", "ns"])
    assert args.prefix == ""


async def test_an_idle_client_is_cut_off_but_a_slow_request_is_not(autojump_clock: object) -> None:
    import json

    import trio.testing

    from meshcore.cli import _control

    async def slow(node: object, req: dict[str, object], send: object) -> dict[str, object]:
        await trio.sleep(3 * _control.CLIENT_TIMEOUT_S)  # handling has no time limit
        return {"ok": True, "slept": True}

    _control.EXTRA_OPS["test.slow"] = slow
    try:
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_control._serve_client, server, None, lambda: None)
            await client.send_all(json.dumps({"op": "test.slow"}).encode() + b"\n")
            assert json.loads(await client.receive_some(1000)) == {"ok": True, "slept": True}
            start = trio.current_time()
            assert await client.receive_some(1000) == b""  # no request: closed after the timeout
            assert trio.current_time() - start >= _control.CLIENT_TIMEOUT_S
    finally:
        del _control.EXTRA_OPS["test.slow"]


async def test_a_client_gone_before_its_answer_ends_only_its_connection(autojump_clock: object) -> None:
    import json

    import trio.testing

    from meshcore.cli import _control

    async def slow(node: object, req: dict[str, object], send: object) -> dict[str, object]:
        await trio.sleep(1)
        return {"ok": True}

    _control.EXTRA_OPS["test.slow"] = slow
    try:
        client, server = trio.testing.memory_stream_pair()
        await client.send_all(json.dumps({"op": "test.slow"}).encode() + b"\n")
        await client.aclose()  # the answer will find the stream broken
        with trio.fail_after(10):
            await _control._serve_client(server, None, lambda: None)  # returns, raises nothing
    finally:
        del _control.EXTRA_OPS["test.slow"]
