#!/usr/bin/env python3
"""Transactional latency under a saturating bulk campaign to the same domain.

A bulk campaign of --bulk recipients (default 200,000) to ONE domain (MX from
dnsmasq) is delivered to bench/arrival_sink.py; once it is flowing, --tx
transactional messages (POST /v1/messages, one recipient each) are sent at
--rate per second to the same domain. Accept-to-250 of one message = from
the moment its POST returned 201 (client clock) to the sink's receipt of its
final "." (the sink's clock, the same host), just before the sink answers
250. Prints p50/p90/p99/max, the bulk rate during the window (from GET
/v1/campaigns/{id}) and the sink's CPU use (it keeps up if well below 100%).
Bounded: --tx messages, --timeout seconds.

--sink smtp-sink runs the bulk alone against Postfix's smtp-sink instead
(no latencies): the same bulk rate there shows that arrival_sink is not the
bottleneck.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.lib import peers  # noqa: E402
from tests.lib.salvo import Salvo, build_campaign  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


class ArrivalSink:
    def __init__(self):
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(HERE, "arrival_sink.py"),
             "--port", "0", "--tag", "tx"],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError(f"arrival_sink did not start: {line}")
        self.port = int(line[1])
        self.arrived = {}
        self.total = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            parts = line.split()
            if parts and parts[0] == "ARRIVED":
                self.arrived[parts[1]] = float(parts[2])
            elif parts and parts[0] == "TOTAL":
                self.total = int(parts[1])

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)


def pct(sorted_values, p):
    i = min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[i]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bulk", type=int, default=400_000,
                    help="bulk campaign size; it must outlast the window "
                         "(200k ran out in 25 s once bulk reached 8k/s)")
    ap.add_argument("--tx", type=int, default=500)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--body-bytes", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=5000,
                    help="bulk deliveries before the transactional window")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--sink", choices=["arrival", "smtp-sink"],
                    default="arrival")
    ap.add_argument("--stream", action="store_true",
                    help="upload the bulk recipients to a streamed campaign "
                         "(queued as run entries) instead of one JSON body")
    ap.add_argument("--set", action="append", default=[],
                    help="extra salvo --set overrides")
    args = ap.parse_args()
    deadline = time.monotonic() + args.timeout
    zone = "prio.test"
    domain = f"one.{zone}"
    work = tempfile.mkdtemp(prefix="salvo-prio-")
    sink = None
    try:
        with peers.Dnsmasq(mx={domain: [(10, f"mx.{zone}")]},
                           a={f"mx.{zone}": "127.0.0.1"},
                           local=[zone]) as dns:
            smtp_sink = None
            if args.sink == "arrival":
                sink = ArrivalSink()
                port = sink.port
            else:
                smtp_sink = peers.SmtpSink().__enter__()
                port = smtp_sink.port
            overrides = {"dns.servers": dns.server, "delivery.smtp_port": port}
            for kv in args.set:
                k, _, v = kv.partition("=")
                overrides[k] = v
            campaign = build_campaign(args.bulk, [domain],
                                      body_bytes=args.body_bytes, name="bulk")
            with Salvo(os.path.join(work, "spool"), overrides,
                       log_path=os.path.join(work, "salvo.log")) as salvo:
                if args.stream:
                    rcpts = campaign.pop("recipients")
                    bulk = salvo.submit_campaign(dict(campaign, stream=True))
                    status, body = salvo.upload(
                        bulk, "".join(json.dumps(r) + "\n"
                                      for r in rcpts).encode(), timeout=300)
                    if status != 200:
                        raise RuntimeError(f"upload: {status} {body}")
                    del rcpts
                else:
                    bulk = salvo.submit_campaign(campaign)
                del campaign
                salvo.wait_settled(bulk, timeout=max(1, deadline - time.monotonic()),
                                   want_delivered=min(args.warmup, args.bulk),
                                   poll=0.05)
                c0, t0 = salvo.counts(bulk), time.monotonic()
                cpu0 = sink.cpu_seconds() if sink else 0.0
                sent = {}
                if sink:
                    for i in range(args.tx):
                        at = t0 + i / args.rate
                        while time.monotonic() < at:
                            time.sleep(max(0.0, min(0.005, at - time.monotonic())))
                        status, body = salvo.request("POST", "/v1/messages", {
                            "from": "app@shop.salvo-demo.test",
                            "to": [f"tx{i}@{domain}"],
                            "subject": f"Your code {i}",
                            "text": f"Your one-time code is {100000 + i}.\n"})
                        returned = time.time()
                        if status != 201:
                            raise RuntimeError(f"POST /v1/messages: {status} {body}")
                        sent[f"tx{i}"] = returned
                        if time.monotonic() > deadline:
                            break
                else:
                    time.sleep(args.tx / args.rate)
                c1, t1 = salvo.counts(bulk), time.monotonic()
                cpu1 = sink.cpu_seconds() if sink else 0.0
                window = t1 - t0
                bulk_rate = (c1["delivered"] - c0["delivered"]) / window
                still = args.bulk - c1["delivered"]
                while sink and len(sink.arrived) < len(sent) and \
                        time.monotonic() < min(deadline, t1 + 30):
                    time.sleep(0.05)
                print(f"# load {open('/proc/loadavg').read().strip()}; bulk "
                      f"pending at window end {still}; counts {c1}",
                      file=sys.stderr)
                if smtp_sink:
                    print(f"salvo_priority sink=smtp-sink window_s={window:.1f} "
                          f"bulk_msgs_per_s={bulk_rate:.0f}")
                    smtp_sink.__exit__(None, None, None)
                    return
                lat = sorted((sink.arrived[k] - t) * 1000
                             for k, t in sent.items() if k in sink.arrived)
                missing = len(sent) - len(lat)
                if not lat:
                    raise RuntimeError("no transactional message arrived")
                sink_cpu = 100 * (cpu1 - cpu0) / window
                print(f"salvo_priority tx={len(sent)} arrived={len(lat)} "
                      f"missing={missing} "
                      f"p50_ms={pct(lat, 50):.1f} p90_ms={pct(lat, 90):.1f} "
                      f"p99_ms={pct(lat, 99):.1f} max_ms={lat[-1]:.1f} "
                      f"bulk_msgs_per_s={bulk_rate:.0f} window_s={window:.1f} "
                      f"sink_cpu={sink_cpu:.0f}%"
                      + (" (bulk ran out during the window)" if still <= 0 else ""))
    finally:
        if sink:
            sink.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
