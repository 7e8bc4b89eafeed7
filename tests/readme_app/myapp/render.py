"""``myapp.render:render``: CPU-bound work a hosted pool runs for the web workers."""


def render(path: str) -> bytes:
    return bytes(sum(ord(c) * i for i, c in enumerate(path)) % 256 for _ in range(64))
