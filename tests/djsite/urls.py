from __future__ import annotations

import hashlib

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path


def index(request):
    return HttpResponse("hello from django\n", content_type="text/plain")


def stream(request):
    return StreamingHttpResponse((f"part {i}\n" for i in range(3)), content_type="text/plain")


def stream_fail(request):
    def parts():
        yield "first part\n"
        raise RuntimeError("the generator failed half-way")
    return StreamingHttpResponse(parts(), content_type="text/plain")


def upload(request):
    data = request.body
    return JsonResponse({"length": len(data), "sha256": hashlib.sha256(data).hexdigest()})


def close(request):
    response = HttpResponse("closing\n", content_type="text/plain")
    response["Connection"] = "close"
    return response


urlpatterns = [path("", index), path("stream", stream), path("stream-fail", stream_fail),
               path("upload", upload), path("close", close)]
