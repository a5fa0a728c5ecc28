#!/usr/bin/env python3
"""End-to-end benchmark: N personalized ~5 KB messages over D domains,
submitted through the HTTP API into the durable queue (WAL fsync on) and
delivered over SMTP to Postfix's smtp-sink, MX records from dnsmasq.
Prints one line: salvo_e2e delivered=N seconds=S msgs_per_s=R
(seconds from the first byte of the submission to the last delivery)."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.lib import peers  # noqa: E402
from tests.lib.salvo import Salvo, build_campaign  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--recipients", type=int, default=100_000)
    ap.add_argument("--domains", type=int, default=50)
    ap.add_argument("--body-bytes", type=int, default=5000)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--set", action="append", default=[],
                    help="extra salvo --set overrides")
    ap.add_argument("--dkim", choices=["ed25519", "rsa"],
                    help="sign every message (a fresh key for the sender)")
    args = ap.parse_args()
    zone = "bench.test"
    domains = [f"d{i:03d}.{zone}" for i in range(args.domains)]
    mx = {d: [(10, f"mx.{zone}")] for d in domains}
    work = tempfile.mkdtemp(prefix="salvo-bench-")
    try:
        with peers.Dnsmasq(mx=mx, a={f"mx.{zone}": "127.0.0.1"},
                           local=[zone]) as dns, peers.SmtpSink() as sink:
            overrides = {"dns.servers": dns.server,
                         "delivery.smtp_port": sink.port}
            if args.dkim:
                key = os.path.join(work, "dkim.pem")
                gen = (["genpkey", "-algorithm", "ed25519"]
                       if args.dkim == "ed25519" else
                       ["genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048"])
                subprocess.run(["openssl", *gen, "-out", key], check=True)
                alg = "ed25519-sha256" if args.dkim == "ed25519" else "rsa-sha256"
                overrides["dkim"] = (
                    f'[{{domain="shop.salvo-demo.test", selector="bench", '
                    f'algorithm="{alg}", key_file="{key}"}}]')
            for kv in args.set:
                k, _, v = kv.partition("=")
                overrides[k] = v
            campaign = build_campaign(args.recipients, domains,
                                      body_bytes=args.body_bytes, name="bench")
            with Salvo(os.path.join(work, "spool"), overrides,
                       log_path=os.path.join(work, "salvo.log")) as salvo:
                t0 = time.monotonic()
                cid = salvo.submit_campaign(campaign)
                t_accept = time.monotonic() - t0
                c = salvo.wait_settled(cid, timeout=args.timeout,
                                       want_delivered=args.recipients, poll=0.05)
                seconds = time.monotonic() - t0
                print(f"# accepted in {t_accept:.2f}s; sink counted "
                      f"{sink.message_count()}; counts {c}", file=sys.stderr)
                tag = f" dkim={args.dkim}" if args.dkim else ""
                print(f"salvo_e2e{tag} delivered={c['delivered']} "
                      f"seconds={seconds:.2f} "
                      f"msgs_per_s={c['delivered'] / seconds:.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
