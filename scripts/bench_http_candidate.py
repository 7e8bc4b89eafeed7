"""Serve bench_http_app with a candidate server library on one shared socket, N forked workers.

    python scripts/bench_http_candidate.py {waitress,cheroot} WORKERS PORT

How janus-mp's ApiModuleAdapter engine was chosen: scripts/bench_http.py --candidates runs
these beside janus-mp and gunicorn. Each server gets one request thread per worker (the handler
is CPU-bound: more threads only contend for the GIL). The parent binds, forks, and on SIGTERM
passes it on and reaps.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys

import bench_http_app


def serve(server: str, sock: socket.socket) -> None:
    logging.getLogger("waitress").setLevel(logging.ERROR)  # "Task queue depth" per request
    if server == "waitress":
        from waitress import serve as waitress_serve

        waitress_serve(bench_http_app.app, sockets=[sock], threads=1, _quiet=True)
    elif server == "cheroot":
        from cheroot import wsgi

        httpd = wsgi.Server(sock.getsockname(), bench_http_app.app, numthreads=1)
        # cheroot binds in prepare(); hand it the shared socket instead.
        httpd.bind = lambda *args: setattr(httpd, "socket", sock)  # type: ignore[method-assign]
        signal.signal(signal.SIGTERM, lambda *_: httpd.stop())
        httpd.start()
    else:
        raise SystemExit(f"unknown server {server!r}")


def main() -> None:
    server, workers, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                serve(server, sock)
            finally:
                os._exit(0)
        children.append(pid)

    def stop(*_: object) -> None:
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    for child in children:
        while True:
            try:
                os.waitpid(child, 0)
                break
            except InterruptedError:
                continue


if __name__ == "__main__":
    main()
