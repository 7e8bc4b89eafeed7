"""What travels in frame bodies: calls, results and raised exceptions, pickled.

Calls are pickled with the standard pickler first (fast, functions by reference) and with dill
when that fails (lambdas, closures, functions of ``__main__``), as multiprocess does; both are
read back by the same pickler (a first byte says which). Only the two ends of a task
unpickle: the worker reads the call, the submitter reads the result.
"""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import dill

_PICKLE, _DILL = b"p", b"d"  # the first byte says which pickler made the rest


def dumps(obj: object) -> bytes:
    try:
        return _PICKLE + pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return _DILL + bytes(dill.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def loads(data: bytes) -> Any:
    view = memoryview(data)[1:]
    return dill.loads(view) if data[:1] == _DILL else pickle.loads(view)


def call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    return dumps((fn, args, kwargs))


def chunk_call(fn: Callable[..., Any], chunk: Sequence[tuple[Any, ...]]) -> bytes:
    """One task running ``fn`` over a chunk of argument tuples (``map``): its result is the
    list of results."""
    return dumps((run_chunk, (fn, chunk), {}))


def run_chunk(fn: Callable[..., Any], chunk: Sequence[tuple[Any, ...]]) -> list[Any]:
    return [fn(*args) for args in chunk]


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a pool worker (set as its ``__cause__``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


class UnpicklableResult(Exception):
    """The task's result (or the exception it raised) could not be pickled."""


def raised(exc: BaseException) -> bytes:
    """The body of a RAISED frame: the exception and its traceback as text (an exception
    that does not pickle travels as a description of itself)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        return dumps((exc, text))
    except Exception as pickling:
        stand_in = UnpicklableResult(f"{type(exc).__name__}: {exc} (the exception could not be "
                                     f"pickled: {type(pickling).__name__}: {pickling})")
        return _PICKLE + pickle.dumps((stand_in, text))


def load_raised(body: bytes) -> BaseException:
    try:
        exc, text = loads(body)
    except Exception as failure:
        return UnpicklableResult(f"the task's exception could not be unpickled: "
                                 f"{type(failure).__name__}: {failure}")
    assert isinstance(exc, BaseException)
    exc.__cause__ = RemoteTraceback(text)
    return exc
