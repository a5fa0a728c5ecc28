#!/usr/bin/env python3
"""A minimal SMTP sink for bench/priority_bench.py that timestamps chosen
messages: like smtp-sink it accepts and discards everything (PIPELINING,
8BITMIME; no STARTTLS), and for every message whose first RCPT starts with
--tag it prints "ARRIVED <local part> <unix time of the final '.'>" on stdout
(flushed), before the 250 is sent. Counts every message; on SIGTERM prints
"TOTAL <messages>" and exits.

Run: /usr/bin/python3 bench/arrival_sink.py --port 0 [--tag tx]
Prints "READY <port>" once listening. Single thread, asyncio.
"""
import argparse
import asyncio
import signal
import sys
import time

total = 0


async def session(reader, writer, tag):
    global total
    write = writer.write
    write(b"220 arrival-sink ESMTP\r\n")
    rcpt = None
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb == b"RCPT":
                if rcpt is None:
                    rcpt = line
                write(b"250 2.1.5 Ok\r\n")
            elif verb == b"MAIL":
                rcpt = None
                write(b"250 2.1.0 Ok\r\n")
            elif verb == b"DATA":
                write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                await reader.readuntil(b"\r\n.\r\n")
                now = time.time()
                total += 1
                if rcpt is not None:
                    lt = rcpt.find(b"<")
                    at = rcpt.find(b"@", lt)
                    local = rcpt[lt + 1:at]
                    if local.startswith(tag):
                        sys.stdout.write(
                            f"ARRIVED {local.decode()} {now:.6f}\n")
                        sys.stdout.flush()
                rcpt = None
                write(b"250 2.0.0 Ok: queued\r\n")
                if writer.transport.get_write_buffer_size() > 65536:
                    await writer.drain()
            elif verb in (b"EHLO", b"HELO"):
                write(b"250-arrival-sink\r\n250-PIPELINING\r\n"
                      b"250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n")
            elif verb == b"QUIT":
                write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                break
            elif verb in (b"RSET", b"NOOP"):
                rcpt = None
                write(b"250 2.0.0 Ok\r\n")
            else:
                write(b"502 5.5.2 Error: command not recognized\r\n")
    except (ConnectionError, asyncio.IncompleteReadError,
            asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tag", default="tx")
    args = ap.parse_args()
    tag = args.tag.encode()
    server = await asyncio.start_server(
        lambda r, w: session(r, w, tag), args.host, args.port,
        limit=1 << 22, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()
    print(f"TOTAL {total}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
