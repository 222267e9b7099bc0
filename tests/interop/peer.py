"""The Twisted side of tests/twisted_interop.rs.

    peer.py client FRAMING PORT COUNT SEED
        Connects to 127.0.0.1:PORT with a Twisted FRAMING receiver, sends COUNT messages
        of random sizes (from random.Random(SEED)), checks that each comes back unchanged
        and in order, prints "OK COUNT" and exits 0; exits 1 with a message otherwise.

    peer.py server FRAMING
        Listens on 127.0.0.1, port 0, with a Twisted FRAMING receiver that sends back every
        message it receives; prints "PORT N" and serves until killed.

    peer.py messages FRAMING COUNT SEED
        Prints the messages the client would send, one hex string a line (for debugging).

FRAMING is one of: line, netstring, int32. Both modes stop on their own after 120 seconds.
"""

import random
import sys

from twisted.internet import protocol, reactor
from twisted.protocols import basic

LIMIT = 1 << 20
SAFETY_SECONDS = 120


def messages(framing, count, seed):
    """COUNT messages of random sizes: many short, some long, a few empty."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.05:
            size = 0
        elif kind < 0.6:
            size = rng.randrange(1, 64)
        elif kind < 0.95:
            size = rng.randrange(64, 2048)
        else:
            size = rng.randrange(2048, 16000)
        data = rng.randbytes(size)
        if framing == "line":
            # A line cannot hold its delimiter; without any CR it cannot hold CRLF.
            data = data.replace(b"\r", b"R")
        out.append(data)
    return out


class Echo:
    """Sends back every message (the server side)."""

    def received(self, message):
        self.send(message)


class Check:
    """Sends every message at once, then checks the echoes in order (the client side)."""

    def connectionMade(self):
        for m in self.factory.msgs:
            self.send(m)

    def received(self, message):
        f = self.factory
        expected = f.msgs[f.next]
        if message != expected:
            f.fail(
                "message %d differs: got %d bytes, expected %d"
                % (f.next, len(message), len(expected))
            )
            return
        f.next += 1
        if f.next == len(f.msgs):
            f.done = True
            self.transport.loseConnection()

    def connectionLost(self, reason):
        f = self.factory
        if not f.done:
            f.fail("connection lost after %d of %d echoes: %s" % (f.next, len(f.msgs), reason.value))
        if reactor.running:
            reactor.stop()


class Line(basic.LineReceiver):
    MAX_LENGTH = LIMIT

    def lineReceived(self, line):
        self.received(line)

    def send(self, message):
        self.sendLine(message)


class Netstring(basic.NetstringReceiver):
    MAX_LENGTH = LIMIT

    def stringReceived(self, string):
        self.received(string)

    def send(self, message):
        self.sendString(message)


class Int32(basic.Int32StringReceiver):
    MAX_LENGTH = LIMIT

    def stringReceived(self, string):
        self.received(string)

    def send(self, message):
        self.sendString(message)


BASES = {"line": Line, "netstring": Netstring, "int32": Int32}


class ClientFactory(protocol.ClientFactory):
    def __init__(self, proto, msgs):
        self.protocol = proto
        self.msgs = msgs
        self.next = 0
        self.done = False
        self.error = None

    def fail(self, why):
        if self.error is None:
            self.error = why
        if reactor.running:
            reactor.stop()

    def clientConnectionFailed(self, connector, reason):
        self.fail("could not connect: %s" % reason.value)


def client(framing, port, count, seed):
    proto = type("Check" + BASES[framing].__name__, (Check, BASES[framing]), {})
    factory = ClientFactory(proto, messages(framing, count, seed))
    reactor.connectTCP("127.0.0.1", port, factory)
    reactor.callLater(SAFETY_SECONDS, factory.fail, "timed out")
    reactor.run()
    if factory.error is not None or not factory.done:
        print("FAIL", factory.error, flush=True)
        return 1
    print("OK", count, flush=True)
    return 0


def server(framing):
    proto = type("Echo" + BASES[framing].__name__, (Echo, BASES[framing]), {})
    factory = protocol.ServerFactory.forProtocol(proto)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    print("PORT", port.getHost().port, flush=True)
    reactor.callLater(SAFETY_SECONDS, reactor.stop)
    reactor.run()
    return 0


def main(argv):
    mode, framing = argv[1], argv[2]
    if framing not in BASES:
        raise SystemExit("unknown framing %r" % framing)
    if mode == "client":
        return client(framing, int(argv[3]), int(argv[4]), int(argv[5]))
    if mode == "server":
        return server(framing)
    if mode == "messages":
        for m in messages(framing, int(argv[3]), int(argv[4])):
            print(m.hex())
        return 0
    raise SystemExit("unknown mode %r" % mode)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
