#!/usr/bin/env python3
"""Durable ingest benchmark: streamed recipient uploads through the HTTP API.

Starts salvo (WAL fsync on), creates a "stream": true campaign due a day
from now (nothing is leased or sent, so no SMTP peers are needed), then uploads N recipients over
C concurrent connections with Python http.client, chunked transfer encoding,
NDJSON or CSV. The bodies are built before the clock starts. Checks that every
upload answered 200 and that the campaign's accepted count equals N.
Prints one line: salvo_ingest format=F uploads=C recipients=N seconds=S
rcpts_per_s=R (from the first byte sent to the last response).
Bounded: N is given, and every upload has a socket timeout."""
import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.lib.salvo import API_KEY, Salvo  # noqa: E402

PIECE = 256 << 10  # bytes per HTTP chunk


def build_body(fmt, start, count, domains):
    rows = []
    if fmt == "csv":
        rows.append("email,first_name\n")
        for i in range(start, start + count):
            rows.append(f"user{i}@d{i % domains:03d}.bench.test,Customer {i}\n")
    else:
        for i in range(start, start + count):
            rows.append(f'{{"email":"user{i}@d{i % domains:03d}.bench.test",'
                        f'"data":{{"first_name":"Customer {i}"}}}}\n')
    return "".join(rows).encode()


def upload(port, cid, fmt, body, timeout, out, idx):
    ctype = "text/csv" if fmt == "csv" else "application/x-ndjson"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    view = memoryview(body)
    pieces = (view[i:i + PIECE] for i in range(0, len(body), PIECE))
    try:
        conn.request("POST", f"/v1/campaigns/{cid}/recipients", body=pieces,
                     headers={"Authorization": f"Bearer {API_KEY}",
                              "Content-Type": ctype},
                     encode_chunked=True)
        resp = conn.getresponse()
        out[idx] = (resp.status, resp.read().decode(errors="replace"),
                    time.monotonic())
    except OSError as e:
        out[idx] = (0, repr(e), time.monotonic())
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--recipients", type=int, default=4_000_000)
    ap.add_argument("--uploads", type=int, default=4)
    ap.add_argument("--format", choices=["ndjson", "csv"], default="ndjson")
    ap.add_argument("--domains", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--set", action="append", default=[],
                    help="extra salvo config override section.key=value")
    args = ap.parse_args()
    overrides = {}
    for kv in args.set:
        k, _, v = kv.partition("=")
        overrides[k] = v
    per = args.recipients // args.uploads
    total = per * args.uploads
    bodies = [build_body(args.format, u * per, per, args.domains)
              for u in range(args.uploads)]
    mbytes = sum(len(b) for b in bodies) / 1e6
    work = tempfile.mkdtemp(prefix="salvo-ingest-")
    try:
        with Salvo(os.path.join(work, "spool"), overrides,
                   log_path=os.path.join(work, "salvo.log")) as salvo:
            cid = salvo.submit_campaign({
                "name": "ingest", "from": "news@shop.salvo-demo.test",
                "subject": "Hi {{first_name}}", "text": "Hello {{first_name}}",
                "stream": True,
                "send_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                         time.gmtime(time.time() + 86400))})
            out = [None] * args.uploads
            threads = [threading.Thread(
                target=upload, args=(salvo.port, cid, args.format, bodies[u],
                                     args.timeout, out, u))
                for u in range(args.uploads)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(args.timeout + 10)
            bad = [o for o in out if o is None or o[0] != 200]
            if bad:
                raise RuntimeError(f"uploads failed: {bad}")
            seconds = max(o[2] for o in out) - t0
            accepted = sum(json.loads(o[1])["accepted"] for o in out)
            counts = salvo.counts(cid)
            if accepted != total or counts["accepted"] != total:
                raise RuntimeError(f"sent {total}, answered {accepted}, "
                                   f"counts {counts}")
            with open("/proc/loadavg") as f:
                load = f.read().split()[0]
            print(f"# {mbytes:.0f} MB of {args.format}; counts {counts}",
                  file=sys.stderr)
            print(f"salvo_ingest format={args.format} uploads={args.uploads} "
                  f"recipients={total} seconds={seconds:.2f} "
                  f"rcpts_per_s={total / seconds:.0f} load1={load}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
