"""The service behind scripts/profile_example/flame.svg: a CPU-bound worker that counts primes
and hashes, in turn.

    cd scripts/profile_example
    janus-mp run crunch:work -w 4 --name crunch &
    janus-mp profile work --name crunch --duration 5 --gil -o flame.svg
"""

import hashlib


def is_prime(n):
    if n < 2:
        return False
    factor = 2
    while factor * factor <= n:
        if n % factor == 0:
            return False
        factor += 1
    return True


def count_primes(limit):
    return sum(1 for n in range(limit) if is_prime(n))


def hash_chunk(rounds):
    digest = b"janus-mp"
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest


def work(ctx):
    ctx.ready()
    while not ctx.shutdown.wait(0):
        count_primes(6000)
        hash_chunk(8000)
