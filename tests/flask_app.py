"""A small Flask app for tests/integration/test_http_apps.py."""

from __future__ import annotations

import hashlib

from flask import Flask, Response, request

app = Flask(__name__)


@app.route("/")
def index():
    return "hello from flask\n"


@app.route("/stream")
def stream():
    return Response((f"part {i}\n" for i in range(3)), mimetype="text/plain")


@app.route("/stream-fail")
def stream_fail():
    def parts():
        yield "first part\n"
        raise RuntimeError("the generator failed half-way")
    return Response(parts(), mimetype="text/plain")


@app.route("/upload", methods=["POST"])
def upload():
    data = request.get_data()
    return {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@app.route("/close")
def close():
    response = Response("closing\n", mimetype="text/plain")
    response.headers["Connection"] = "close"
    return response
