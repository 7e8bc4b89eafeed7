"""How janus-mp's HTTP/1.1 parser was chosen: candidate libraries on two axes, in one run.

    python scripts/bench_http_parsers.py [--requests 1000] [--rounds 3]

1. Strictness: every raw request of tests/http_cases.py is fed to each parser as a whole (then
   EOF). A valid case counts when the parser completes it with the expected body; a malformed
   case counts when the parser refuses it or leaves it incomplete at EOF (a server then answers
   400). "passed on" = malformed yet completed as a request.
   This is the library alone: the engine adds its own checks on top (duplicate Host, CL+TE...).
2. Throughput with the CPU-bound app of scripts/bench_http.py: parse wrk's request, call the
   app, serialise its response, ``--requests`` times in one process (no sockets: the parser's
   share is what differs), and the parser alone on the same request.

Candidates: h11 (pure Python) and httptools (llhttp); either may be missing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_http_app  # noqa: E402

from tests.http_cases import CASES  # noqa: E402

WRK_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"


def parse_h11(raw: bytes) -> tuple[bool, bytes]:
    """(completed, body); raises on refusal."""
    import h11

    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=8192)
    conn.receive_data(raw)
    conn.receive_data(b"")
    body = b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return True, body
        elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
            return False, body


def parse_httptools(raw: bytes) -> tuple[bool, bytes]:
    import httptools

    state: dict[str, Any] = {"done": False, "body": b""}

    class Callbacks:
        def on_body(self, data: bytes) -> None:
            state["body"] += data

        def on_message_complete(self) -> None:
            state["done"] = True

    parser = httptools.HttpRequestParser(Callbacks())
    parser.set_dangerous_leniencies(lenient_spaces_after_chunk_size=True)  # as the engine
    parser.feed_data(raw)
    return state["done"], state["body"]


def serve_h11(raw: bytes) -> bytes:
    import h11

    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    request = conn.next_event()
    assert isinstance(request, h11.Request)
    assert isinstance(conn.next_event(), h11.EndOfMessage)
    status, headers, body = _call_app(request.method, request.target)
    out = conn.send(h11.Response(status_code=status, headers=headers)) or b""
    out += conn.send(h11.Data(data=body)) or b""
    return out + (conn.send(h11.EndOfMessage()) or b"")


def serve_httptools(raw: bytes) -> bytes:
    import httptools

    seen: dict[str, bytes] = {}

    class Callbacks:
        def on_url(self, url: bytes) -> None:
            seen["url"] = url

    parser = httptools.HttpRequestParser(Callbacks())
    parser.feed_data(raw)
    status, headers, body = _call_app(parser.get_method(), seen["url"])
    head = [b"HTTP/1.1 %d OK\r\n" % status]
    head += [b"%s: %s\r\n" % (name, value) for name, value in headers]
    return b"".join(head) + b"\r\n" + body


def _call_app(method: bytes, target: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    environ = {"REQUEST_METHOD": method.decode("latin-1"),
               "PATH_INFO": target.decode("latin-1")}
    got: list[Any] = []
    chunks = bench_http_app.app(environ, lambda status, headers: got.extend((status, headers)))
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in got[1]]
    return int(got[0][:3]), headers, b"".join(chunks)


PARSERS: dict[str, tuple[Callable[[bytes], tuple[bool, bytes]], Callable[[bytes], bytes]]] = {
    "h11": (parse_h11, serve_h11),
    "httptools": (parse_httptools, serve_httptools),
}


def strictness(parse: Callable[[bytes], tuple[bool, bytes]]) -> dict[str, Any]:
    valid_ok, refused, passed_on, wrong = 0, 0, 0, []
    for case in CASES:
        try:
            completed, body = parse(case.raw)
            error = None
        except Exception as exc:  # each library has its own error type: a refusal
            completed, body, error = False, b"", exc
        if case.valid:
            if completed and (case.body is None or body == case.body):
                valid_ok += 1
            else:
                wrong.append(f"valid refused: {case.name} ({error})")
        elif error is not None:
            refused += 1
        elif completed:
            passed_on += 1
            wrong.append(f"malformed passed on: {case.name}")
        else:  # incomplete when the input ended: a server refuses it at EOF
            refused += 1
    return {"valid_ok": valid_ok, "refused": refused, "passed_on": passed_on, "wrong": wrong}


def throughput(fn: Callable[[bytes], Any], n: int) -> float:
    began = time.perf_counter()
    for _ in range(n):
        fn(WRK_REQUEST)
    return n / (time.perf_counter() - began)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    valid = sum(c.valid for c in CASES)
    print(f"{len(CASES)} cases: {valid} valid, {len(CASES) - valid} malformed; "
          f"app: {bench_http_app.ITERATIONS} iterations of CPU work per request")
    print(f"{'parser':10} {'valid ok':>9} {'refused':>8} {'passed on':>10} "
          f"{'parse only/s':>13} {'with app req/s':>15}")
    details = {}
    for name, (parse, serve) in PARSERS.items():
        try:
            __import__(name)
        except ImportError:
            print(f"{name:10} not installed")
            continue
        result = strictness(parse)
        parse_rate = throughput(parse, 20000)
        app_rate = max(throughput(serve, args.requests) for _ in range(args.rounds))
        print(f"{name:10} {result['valid_ok']:>5}/{valid:<3} {result['refused']:>4}/"
              f"{len(CASES) - valid:<3} {result['passed_on']:>10} {parse_rate:>13.0f} "
              f"{app_rate:>15.1f}")
        details[name] = result["wrong"]
    for name, wrong in details.items():
        print(f"\n{name}: {len(wrong)} cases not as the RFCs say")
        for line in wrong:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
