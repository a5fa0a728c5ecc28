#!/usr/bin/python3
"""FakeSmtp: a scripted, hostile-on-demand SMTP server for integration tests.

Run: /usr/bin/python3 tests/fakes/fake_smtp.py --port P --log FILE
         [--host 127.0.0.1] [--no-pipelining] [--banner-delay S]
         [--slow-delay S] [--max-size N] [--hostname NAME]
         [--delay VERB:SECONDS ...] [--no-data]
         [--tempfail-percent P] [--rcpts-only]
--port 0 picks a free port. Once listening it prints "READY <port>" on stdout.
One asyncio loop on the main thread; stdlib only.

Advertises PIPELINING (unless --no-pipelining), 8BITMIME, ENHANCEDSTATUSCODES,
SIZE. Behaviour is chosen by the recipient's local part (case-insensitive,
anything after '+' ignored, so tempfail-rcpt+7@x behaves as tempfail-rcpt@x):
  tempfail-rcpt     451 4.3.0 on RCPT
  reject-rcpt       550 5.1.1 on RCPT
  tempfail-once-*   451 4.3.0 on the first RCPT of that exact address, then 250
  slow-rcpt         RCPT reply delayed by --slow-delay (default 2s)
  tempfail-data     451 4.3.0 after the final "."
  reject-data       554 5.6.0 after the final "."
  drop-in-data      connection closed after the first line of the DATA body
Anything else gets 250, except that --tempfail-percent P answers 451 4.7.1 to
the first RCPT of about P% of the other addresses (chosen by a CRC-32 of the
lower-cased address, so the same ones every run) and 250 to later attempts.
--broken-starttls offers STARTTLS, answers 220 and
then sends garbage instead of a TLS handshake. Data outcomes apply if any accepted recipient asks for
one; precedence drop-in-data > reject-data > tempfail-data.
--delay VERB:SECONDS (repeatable, fractions allowed) delays every reply to
VERB (EHLO, MAIL, RCPT, DATA, "." for the end of data, CONNECT for the banner).

Log (--log): one JSON object per line, flushed per line. Accepted messages:
  {"event": "message", "id", "conn", "mail_from", "rcpts": [accepted...],
   "size", "data_b64", "bare_lf", "at"}
data is the dot-unstuffed body as received, CRLFs kept, without the final
".\r\n" (data_b64 is omitted with --no-data, for big runs). Other events: connect, reply (every non-2xx/3xx reply: cmd, arg,
code, text), drop, improper_pipelining, early_talker, close.
A message that got 4xx/5xx after "." is never logged as "message".
--rcpts-only (for big runs): the log holds only accepted messages, one plain
text line each, the accepted recipients separated by spaces, and a line
"!<code> <address>" for each RCPT answered 4xx/5xx; no other events.
"""

import argparse
import asyncio
import base64
import json
import re
import sys
import time
import zlib

_MAIL_RE = re.compile(rb"^MAIL FROM:\s?<([^<>]*)>(.*)$", re.I)
_RCPT_RE = re.compile(rb"^RCPT TO:\s?<([^<>]*)>(.*)$", re.I)
_MAX_COMMAND_LINE = 4096
_MAX_RCPTS = 1000


class Server:
    """Process-wide state shared by all sessions (the asyncio loop thread)."""

    def __init__(self, args):
        self.args = args
        self.log_file = open(args.log, "a", buffering=1) if args.log else None
        self.tempfailed_once = set()
        # --tempfail-percent in hundredths of a percent (CRC-32 mod 10000).
        self.tempfail_cutoff = int(round(args.tempfail_percent * 100))
        self.next_conn = 0
        self.next_msg = 0

    def log(self, event, **fields):
        if self.log_file is None or self.args.rcpts_only:
            return
        record = {"event": event}
        record.update(fields)
        record["at"] = time.time()
        self.log_file.write(json.dumps(record, sort_keys=True) + "\n")


def _behaviour(address):
    local = address.rsplit("@", 1)[0].lower().split("+", 1)[0]
    if local.startswith("tempfail-once-"):
        return "tempfail-once"
    return local


class Session(asyncio.Protocol):
    """One SMTP connection. data_received() fills a buffer; run() consumes it."""

    def __init__(self, server):
        self.server = server
        self.args = server.args
        self.buf = bytearray()
        self.eof = False
        self.wakeup = asyncio.Event()
        self.out = []
        self.transport = None
        self.closed = False
        self.conn = 0
        self.helo = None
        self.reset()

    def reset(self):
        self.mail_from = None
        self.rcpts = []

    # asyncio.Protocol callbacks.
    def connection_made(self, transport):
        self.transport = transport
        self.server.next_conn += 1
        self.conn = self.server.next_conn
        self.server.log("connect", conn=self.conn)
        asyncio.get_running_loop().create_task(self.run())

    def data_received(self, data):
        self.buf += data
        self.wakeup.set()

    def eof_received(self):
        self.eof = True
        self.wakeup.set()
        return False

    def connection_lost(self, exc):
        self.eof = True
        self.closed = True
        self.wakeup.set()

    # I/O helpers.
    async def read_line(self, limit):
        """Returns one line including its LF, or None on EOF / overlong line."""
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line = bytes(self.buf[: nl + 1])
                del self.buf[: nl + 1]
                return line
            if self.eof or (limit and len(self.buf) > limit):
                return None
            self.wakeup.clear()
            await self.wakeup.wait()

    def reply(self, text, cmd="", arg=b""):
        code = int(text[:3])
        if code >= 400 and self.args.rcpts_only:
            if cmd == "RCPT" and self.server.log_file is not None:
                m = _RCPT_RE.match(arg)
                self.server.log_file.write("!%d %s\n" % (code, (
                    m.group(1) if m else arg).decode("utf-8", "replace")))
        elif code >= 400:
            self.server.log("reply", conn=self.conn, cmd=cmd,
                            arg=arg.decode("utf-8", "replace"), code=code,
                            text=text)
        self.out.append(text.encode() + b"\r\n")

    def flush(self):
        if self.out and not self.closed:
            self.transport.write(b"".join(self.out))
        self.out = []

    def close(self):
        self.flush()
        if not self.closed:
            self.transport.close()
        self.closed = True

    # The session.
    async def run(self):
        try:
            await self.converse()
        finally:
            self.close()
            self.server.log("close", conn=self.conn)

    async def converse(self):
        if self.args.banner_delay > 0:
            await asyncio.sleep(self.args.banner_delay)
            if self.buf:
                self.server.log("early_talker", conn=self.conn)
        await self.delay("CONNECT")
        self.reply("220 %s ESMTP FakeSmtp" % self.args.hostname)
        self.flush()
        while not self.closed:
            line = await self.read_line(_MAX_COMMAND_LINE)
            if line is None:
                if not self.eof:
                    self.reply("500 5.5.2 Line too long", "LINE")
                return
            if not self.args.pipelining and self.buf:
                self.server.log("improper_pipelining", conn=self.conn,
                                after=line.strip().decode("utf-8", "replace"))
            if not await self.command(line.rstrip(b"\r\n")):
                return
            if not self.buf:
                self.flush()

    async def delay(self, verb):
        seconds = self.args.delays.get(verb)
        if seconds:
            self.flush()
            await asyncio.sleep(seconds)

    async def command(self, line):
        """Handles one command line; returns False when the session ends."""
        verb = line.split(b" ", 1)[0].upper()
        arg = line[len(verb) + 1:]
        await self.delay(verb.decode("ascii", "replace"))
        if verb in (b"EHLO", b"HELO"):
            if not arg.strip():
                self.reply("501 5.5.4 Syntax: %s hostname" % verb.decode(), "EHLO")
                return True
            self.helo = arg.strip()
            self.reset()
            if verb == b"HELO":
                self.reply("250 %s" % self.args.hostname)
                return True
            lines = [self.args.hostname]
            if self.args.pipelining:
                lines.append("PIPELINING")
            lines += ["SIZE %d" % self.args.max_size, "8BITMIME",
                      "ENHANCEDSTATUSCODES"]
            if self.args.broken_starttls:
                lines.append("STARTTLS")
            for i, text in enumerate(lines):
                sep = " " if i == len(lines) - 1 else "-"
                self.reply("250%s%s" % (sep, text))
            return True
        if verb == b"STARTTLS" and self.args.broken_starttls:
            # Says yes, then answers the ClientHello with garbage: the
            # handshake fails (a broken TLS set-up on the server).
            self.server.log("starttls", conn=self.conn)
            self.reply("220 2.0.0 Ready to start TLS")
            self.flush()
            # Wait for the ClientHello, then answer it with garbage.
            while not self.buf and not self.eof:
                self.wakeup.clear()
                await self.wakeup.wait()
            self.out.append(b"this is not TLS\r\n" * 4)
            return False
        if verb == b"MAIL":
            return self.mail(line)
        if verb == b"RCPT":
            return await self.rcpt(line)
        if verb == b"DATA":
            return await self.data(arg)
        if verb == b"RSET":
            self.reset()
            self.reply("250 2.0.0 Ok")
            return True
        if verb == b"NOOP":
            self.reply("250 2.0.0 Ok")
            return True
        if verb == b"VRFY":
            self.reply("252 2.0.0 Cannot VRFY user")
            return True
        if verb == b"QUIT":
            self.reply("221 2.0.0 Bye")
            return False
        self.reply("502 5.5.2 Error: command not recognized", "UNKNOWN", line)
        return True

    def mail(self, line):
        if self.helo is None:
            self.reply("503 5.5.1 Error: send HELO/EHLO first", "MAIL", line)
            return True
        if self.mail_from is not None:
            self.reply("503 5.5.1 Error: nested MAIL command", "MAIL", line)
            return True
        m = _MAIL_RE.match(line)
        if not m:
            self.reply("501 5.5.4 Syntax: MAIL FROM:<address>", "MAIL", line)
            return True
        for param in m.group(2).split():
            key, _, value = param.partition(b"=")
            if key.upper() == b"SIZE" and value.isdigit() and \
                    int(value) > self.args.max_size:
                self.reply("552 5.3.4 Message size exceeds fixed limit",
                           "MAIL", line)
                return True
        self.mail_from = m.group(1).decode("utf-8", "replace")
        self.reply("250 2.1.0 Ok")
        return True

    async def rcpt(self, line):
        if self.mail_from is None:
            self.reply("503 5.5.1 Error: need MAIL command", "RCPT", line)
            return True
        m = _RCPT_RE.match(line)
        if not m or b"@" not in m.group(1):
            self.reply("501 5.1.3 Bad recipient address syntax", "RCPT", line)
            return True
        address = m.group(1).decode("utf-8", "replace")
        kind = _behaviour(address)
        if kind == "slow-rcpt":
            self.flush()
            await asyncio.sleep(self.args.slow_delay)
        if len(self.rcpts) >= _MAX_RCPTS:
            self.reply("452 4.5.3 Error: too many recipients", "RCPT", line)
        elif kind == "tempfail-rcpt":
            self.reply("451 4.3.0 Temporary failure for this recipient",
                       "RCPT", line)
        elif kind == "reject-rcpt":
            self.reply("550 5.1.1 No such user", "RCPT", line)
        elif kind == "tempfail-once" and \
                address.lower() not in self.server.tempfailed_once:
            self.server.tempfailed_once.add(address.lower())
            self.reply("451 4.3.0 Try again later (first attempt)",
                       "RCPT", line)
        elif self.server.tempfail_cutoff and \
                self.tempfail_first(address.lower()):
            self.reply("451 4.7.1 Greylisted, try again later",
                       "RCPT", line)
        else:
            self.rcpts.append(address)
            self.reply("250 2.1.5 Ok")
        return True

    async def read_body_fast(self):
        """--rcpts-only: the DATA body up to the final ".", without looking at
        each line (no bare-LF count, no unstuffing: only the size is used).
        Returns the body (CRLFs kept, final ".\r\n" removed) or None on EOF."""
        while True:
            if self.buf.startswith(b".\r\n"):
                del self.buf[:3]
                return bytearray()
            end = self.buf.find(b"\r\n.\r\n")
            if end >= 0:
                body = self.buf[:end + 2]
                del self.buf[:end + 5]
                return body
            if self.eof:
                return None
            self.wakeup.clear()
            await self.wakeup.wait()

    def tempfail_first(self, address):
        """--tempfail-percent: True on the first attempt of a chosen address."""
        if zlib.crc32(address.encode()) % 10000 >= self.server.tempfail_cutoff:
            return False
        if address in self.server.tempfailed_once:
            return False
        self.server.tempfailed_once.add(address)
        return True

    async def data(self, arg):
        if self.mail_from is None:
            self.reply("503 5.5.1 Error: need MAIL command", "DATA")
            return True
        if not self.rcpts:
            self.reply("554 5.5.1 Error: no valid recipients", "DATA")
            return True
        if self.buf:
            # RFC 2920: DATA ends a pipelined group; the body must wait for 354.
            self.server.log("improper_pipelining", conn=self.conn, after="DATA")
        self.reply("354 End data with <CR><LF>.<CR><LF>")
        self.flush()
        kinds = {_behaviour(r) for r in self.rcpts}
        body = bytearray()
        bare_lf = 0
        fast = self.args.rcpts_only and "drop-in-data" not in kinds
        if fast:
            body = await self.read_body_fast()
            if body is None:
                return False  # client went away mid-DATA
            await self.delay(".")
        while not fast:
            line = await self.read_line(0)
            if line is None:
                return False  # client went away mid-DATA
            if "drop-in-data" in kinds:
                self.server.log("drop", conn=self.conn, rcpts=self.rcpts)
                return False
            if line == b".\r\n":
                await self.delay(".")
                break
            if not line.endswith(b"\r\n"):
                bare_lf += 1
            if line.startswith(b"."):
                line = line[1:]
            body += line
        if len(body) > self.args.max_size:
            self.reply("552 5.3.4 Message size exceeds fixed limit", ".")
        elif "reject-data" in kinds:
            self.reply("554 5.6.0 Message content rejected", ".")
        elif "tempfail-data" in kinds:
            self.reply("451 4.3.0 Temporary failure after data", ".")
        else:
            self.server.next_msg += 1
            msg_id = "F%06d" % self.server.next_msg
            if self.args.rcpts_only and self.server.log_file is not None:
                self.server.log_file.write(" ".join(self.rcpts) + "\n")
            data = {}
            if self.args.record_data:
                data["data_b64"] = base64.b64encode(bytes(body)).decode()
            self.server.log("message", id=msg_id, conn=self.conn,
                            mail_from=self.mail_from, rcpts=self.rcpts,
                            size=len(body), bare_lf=bare_lf, **data)
            self.reply("250 2.0.0 Ok: queued as %s" % msg_id)
        self.reset()
        return True


async def _serve(args):
    server = Server(args)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: Session(server), args.host,
                                        args.port, backlog=1024)
    port = listener.sockets[0].getsockname()[1]
    sys.stdout.write("READY %d\n" % port)
    sys.stdout.flush()
    async with listener:
        await listener.serve_forever()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", default="")
    parser.add_argument("--no-pipelining", dest="pipelining",
                        action="store_false")
    parser.add_argument("--banner-delay", type=float, default=0.0)
    parser.add_argument("--slow-delay", type=float, default=2.0)
    parser.add_argument("--max-size", type=int, default=10 * 1024 * 1024)
    parser.add_argument("--hostname", default="fake.smtp.test")
    parser.add_argument("--delay", action="append", default=[],
                        metavar="VERB:SECONDS")
    parser.add_argument("--no-data", dest="record_data", action="store_false")
    parser.add_argument("--tempfail-percent", type=float, default=0.0,
                        help="451 on the first RCPT of about P%% of addresses")
    parser.add_argument("--rcpts-only", action="store_true",
                        help="log only accepted recipients, a line a message")
    parser.add_argument("--broken-starttls", action="store_true",
                        help="offer STARTTLS, then fail the handshake")
    args = parser.parse_args(argv)
    args.delays = {}
    for spec in args.delay:
        verb, _, seconds = spec.rpartition(":")
        args.delays[verb.upper()] = float(seconds)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
