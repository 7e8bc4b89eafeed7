"""The WSGI app the converted gunicorn configurations serve."""

import os


def app(environ, start_response):
    body = f"{os.environ.get('GREETING', 'hello')} from {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
