"""Python Twisted's side of benches/defer.rs: the same Deferred loads, the same way.

    python3 benches/defer.py RUNS N

Prints "chain RATE" (a Deferred made, four callbacks added, fired, its result read) and
"spawn RATE" (ensureDeferred of a coroutine that awaits an already fired Deferred), RATE
being the median of RUNS runs of N operations, in operations per second of this thread's
CPU time, and "check SUM", the sum of 1000 chains' results, which the Rust side compares with
its own. Prints "error ..." and exits 1 if Twisted cannot be imported.
"""

import statistics
import sys
import time

try:
    from twisted.internet.defer import Deferred, ensureDeferred, succeed
except ImportError as e:  # pragma: no cover - reported by the Rust side
    print("error", e)
    sys.exit(1)

MASK = (1 << 64) - 1


def chains(n):
    total = 0
    for i in range(n):
        d = Deferred()
        d.addCallback(lambda x: x + 1)
        d.addCallback(lambda x: (x * 3) & MASK)
        d.addCallback(lambda x: x ^ 0x55)
        d.addCallback(lambda x: (x - 7) & MASK)
        d.callback(i)
        total = (total + d.result) & MASK
    return total


async def task(i):
    v = await succeed(i)
    return v + 1


def spawns(n):
    total = 0
    for i in range(n):
        d = ensureDeferred(task(i))
        total += d.result
    return total


def median_rate(runs, n, f):
    f(n // 10 + 1)
    rates = []
    for _ in range(runs):
        t = time.thread_time()
        f(n)
        rates.append(n / (time.thread_time() - t))
    return statistics.median(rates)


def main():
    runs = int(sys.argv[1])
    n = int(sys.argv[2])
    # Both loops must compute what the Rust side computes.
    assert spawns(1000) == sum(i + 1 for i in range(1000))
    print("check", chains(1000))
    print("chain", median_rate(runs, n, chains))
    print("spawn", median_rate(runs, n, spawns))


if __name__ == "__main__":
    main()
