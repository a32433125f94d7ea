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


class _Later:
    """A NOWAIT_OPS handler that answers `delay` seconds later, from another task."""

    def __init__(self, nursery: trio.Nursery, delay: float) -> None:
        self.nursery, self.delay = nursery, delay

    def __call__(self, node: object, req: dict[str, object], reply) -> None:  # type: ignore[no-untyped-def]
        if req.get("bad"):
            raise ValueError("bad request")

        async def later() -> None:
            await trio.sleep(self.delay)
            reply({"ok": True, "n": req.get("n")})

        self.nursery.start_soon(later)


async def _lines(stream: trio.abc.Stream, n: int) -> list[dict[str, object]]:
    import json

    buf = b""
    while buf.count(b"\n") < n:
        chunk = await stream.receive_some(1000)
        assert chunk, buf
        buf += chunk
    return [json.loads(line) for line in buf.splitlines()]


async def test_answers_given_without_the_connection_waiting_keep_request_order(autojump_clock: object) -> None:
    import json

    import trio.testing

    from meshcore.cli import _control

    async def fast(node: object, req: dict[str, object], send: object) -> dict[str, object]:
        return {"ok": True, "n": req.get("n")}

    async with trio.open_nursery() as nursery:
        _control.NOWAIT_OPS["test.later"] = _Later(nursery, 3 * _control.CLIENT_TIMEOUT_S)
        _control.EXTRA_OPS["test.fast"] = fast
        try:
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(_control._serve_client, server, None, lambda: None)
            # Pipelined: a slow answer owed (longer than the idle timeout: not cut off), then
            # a request answered at once, then a bad one: the answers come in request order.
            await client.send_all(b"".join(json.dumps(r).encode() + b"\n" for r in (
                {"op": "test.later", "n": 1}, {"op": "test.fast", "n": 2}, {"op": "test.later", "bad": True})))
            assert await _lines(client, 3) == [{"ok": True, "n": 1}, {"ok": True, "n": 2},
                                               {"ok": False, "error": "bad request"}]
            start = trio.current_time()
            assert await client.receive_some(1000) == b""  # then idle: cut off after the timeout
            assert trio.current_time() - start >= _control.CLIENT_TIMEOUT_S
        finally:
            del _control.NOWAIT_OPS["test.later"], _control.EXTRA_OPS["test.fast"]


async def test_a_client_gone_before_an_answer_owed_to_it_ends_only_its_connection(autojump_clock: object) -> None:
    import json

    import trio.testing

    from meshcore.cli import _control

    async with trio.open_nursery() as nursery:
        _control.NOWAIT_OPS["test.later"] = _Later(nursery, 1)
        try:
            client, server = trio.testing.memory_stream_pair()
            await client.send_all(json.dumps({"op": "test.later"}).encode() + b"\n")
            await client.aclose()
            with trio.fail_after(10):
                await _control._serve_client(server, None, lambda: None)  # returns, raises nothing
            await trio.sleep(2)  # the late answer finds the connection gone: nothing raises
        finally:
            del _control.NOWAIT_OPS["test.later"]


async def test_pipelined_kv_requests_on_one_socket_are_answered_in_order(tmp_path: Path) -> None:
    import json
    import socket

    async with kv_mesh(tmp_path, ["a", "b"]) as mesh:
        a = mesh.nodes["a"]
        path = tmp_path / "a.sock"
        await mesh.nursery.start(serve_control, path, a, lambda: None)
        assert (await ask(path, "namespace.create", name="c", replicas=2))["ok"]
        await wait_for_namespace(mesh, "c")
        reqs = []
        for i in range(20):
            reqs += [{"op": "kv.put", "namespace": "c", "key_b64": b64(b"k"), "value_b64": b64(b"v%d" % i),
                      "consistency": "all"},
                     {"op": "kv.get", "namespace": "c", "key_b64": b64(b"k"), "consistency": "all"}]
        reqs += [{"op": "kv.del", "namespace": "c", "key_b64": b64(b"k")},
                 {"op": "kv.get", "namespace": "c", "key_b64": b64(b"k"), "consistency": "all"},
                 {"op": "kv.get", "namespace": "nope", "key_b64": b64(b"k")}]

        def run() -> list[dict[str, object]]:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            try:
                s.connect(str(path))
                s.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in reqs))  # all at once
                f = s.makefile("rb")
                return [json.loads(f.readline()) for _ in reqs]
            finally:
                s.close()

        answers = await trio.to_thread.run_sync(run)
        for i in range(20):  # each get sees the put before it: answered in request order
            assert answers[2 * i]["ok"] is True and "stamp_us" in answers[2 * i]
            assert answers[2 * i + 1] == {"ok": True, "found": True, "value_b64": b64(b"v%d" % i)}
        assert answers[40] == {"ok": True}
        assert answers[41] == {"ok": True, "found": False, "value_b64": None}
        assert answers[42]["ok"] is False and "nope" in str(answers[42]["error"])
