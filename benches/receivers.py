"""Python Twisted's side of benches/receivers.rs: the same parsing loads, the same way.

    python3 benches/receivers.py RUNS SECONDS

Prints one line per load, "line CHUNK RATE" or "int32 CHUNK RATE", RATE being the median
of RUNS runs in messages per second of this thread's CPU time, each run feeding the stream
repeatedly for about SECONDS seconds of it. Prints "error ..." and exits 1 if Twisted cannot be imported.
"""

import statistics
import struct
import sys
import time

try:
    from twisted.internet.testing import StringTransport
    from twisted.protocols import basic
except ImportError as e:  # pragma: no cover - reported by the Rust side
    print("error", e)
    sys.exit(1)

LINE_STREAM = (b"abcde" * 10 + b"\r\n") * 1000
LINE_CHUNKS = [16, 64, 1024, 65536]
INT32_STREAM = (struct.pack("!I", 50) + b"x" * 50) * 1000
INT32_CHUNKS = [1024, 65536]


class Lines(basic.LineReceiver):
    count = 0

    def lineReceived(self, line):
        self.count += 1


class Strings(basic.Int32StringReceiver):
    count = 0

    def stringReceived(self, string):
        self.count += 1


def rate(proto_class, stream, chunk, runs, seconds):
    chunks = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]
    rates = []
    for _ in range(runs):
        p = proto_class()
        p.makeConnection(StringTransport())
        start = time.thread_time()
        while True:
            for c in chunks:
                p.dataReceived(c)
            elapsed = time.thread_time() - start
            if elapsed >= seconds:
                break
        rates.append(p.count / elapsed)
    return statistics.median(rates)


def main(argv):
    runs = int(argv[1]) if len(argv) > 1 else 5
    seconds = float(argv[2]) if len(argv) > 2 else 0.2
    for chunk in LINE_CHUNKS:
        print("line", chunk, rate(Lines, LINE_STREAM, chunk, runs, seconds), flush=True)
    for chunk in INT32_CHUNKS:
        print("int32", chunk, rate(Strings, INT32_STREAM, chunk, runs, seconds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
