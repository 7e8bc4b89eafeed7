"""A preloaded application of a chosen size: what a real app imports once before forking.

Imported by the supervisor (janus-mp, the floor) or by ``gunicorn --preload`` before any worker
exists; its size in MB comes from the environment (``BENCH_PRELOAD_MB``). Half of it is numpy
arrays (touched, so their pages exist), half Python objects (lists, strings, tuples, floats:
what the collector walks and reference counting writes to). Without numpy all of it is Python
objects; ``KIND`` says which was built.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

MB = int(os.environ.get("BENCH_PRELOAD_MB", "100"))
#: Bytes of Python objects per entry of OBJECTS (measured: a list, a str, a tuple, a float).
_ENTRY_BYTES = 250

try:
    import numpy
except ImportError:
    numpy = None

if numpy is not None:
    ARRAYS = [numpy.arange(MB * 2**20 // 2 // 8 // 4, dtype=numpy.float64) for _ in range(4)]
    _object_bytes = MB * 2**20 // 2
    KIND = f"{MB} MB: numpy {numpy.__version__} arrays and Python objects, half each"
else:
    ARRAYS = []
    _object_bytes = MB * 2**20
    KIND = f"{MB} MB of Python objects (numpy not installed)"
OBJECTS = [[i, str(i), (i, float(i))] for i in range(_object_bytes // _ENTRY_BYTES)]


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = f"{len(OBJECTS)} {len(ARRAYS)}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
