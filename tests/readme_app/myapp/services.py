"""``myapp.services:Crunch``: a CPU-bound service."""

from janus_mp import JanusService


class Crunch(JanusService):
    name = "crunch"

    def run(self, ctx):
        ctx.ready()
        while not ctx.shutdown.wait(0.05):
            ctx.heartbeat()
            sum(i * i for i in range(10_000))
