"""``myapp.mail:Mailer``: a service that waits for work."""

from janus_mp import JanusService


class Mailer(JanusService):
    name = "mailer"

    def run(self, ctx):
        ctx.ready()
        ctx.shutdown.wait()
