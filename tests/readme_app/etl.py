"""``etl:extract`` and ``etl:load``: the one-shot jobs of the README's batch pipeline."""


def extract(ctx):
    ctx.ready()
    return 0


def load(ctx):
    ctx.ready()
    return 0
