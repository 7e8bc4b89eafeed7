"""Placeholder replaced below."""
from __future__ import annotations

from janus_mp.service import JanusService


class ApiModuleAdapter(JanusService):
    pass
