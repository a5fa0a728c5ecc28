#!/usr/bin/env python3
"""make demo: Salvo on its embedded defaults delivers a 100,000-recipient
personalized campaign over 50 domains to a local capture MX, with live
progress and a summary.

Peers, all on loopback: dnsmasq serves the MX records; Postfix's smtp-sink
is the capture MX. Of the 50 domains, 48 have an MX that accepts, one does
not exist (its recipients bounce) and one's MX refuses connections (its
recipients are deferred for a later retry). The only settings changed from
the embedded defaults point Salvo at those loopback peers and at a fresh
spool.
"""
import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.lib import peers  # noqa: E402
from tests.lib.salvo import Salvo, build_campaign  # noqa: E402

ZONE = "salvo-demo.test"


def bar(c, total, rate, width=32):
    done = c["delivered"] + c["bounced"] + c["expired"] + c["deferred"]
    filled = int(width * done / max(1, total))
    return (f"[{'#' * filled}{'.' * (width - filled)}] "
            f"{done:>7,}/{total:,}  delivered {c['delivered']:>7,}  "
            f"deferred {c['deferred']:>5,}  bounced {c['bounced']:>5,}  "
            f"{rate:>7,.0f} msg/s")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--recipients", type=int, default=100_000)
    ap.add_argument("--domains", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()

    good = [f"shop{i:02d}.{ZONE}" for i in range(args.domains - 2)]
    gone = f"gone.{ZONE}"        # no such domain: bounces
    down = f"down.{ZONE}"        # MX refuses connections: deferred
    domains = good + [gone, down]
    mx = {d: [(10, f"mx.{ZONE}")] for d in good}
    mx[down] = [(10, f"mx-down.{ZONE}")]
    a = {f"mx.{ZONE}": "127.0.0.1", f"mx-down.{ZONE}": "127.0.0.2"}

    workdir = os.path.join(os.getcwd(), ".demo")
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    tty = sys.stdout.isatty()

    with peers.Dnsmasq(mx=mx, a=a, local=[ZONE]) as dns, \
            peers.SmtpSink() as sink:
        overrides = {"dns.servers": dns.server,
                     "delivery.smtp_port": sink.port}
        print(f"demo: dnsmasq on {dns.server}, capture MX (smtp-sink) on "
              f"127.0.0.1:{sink.port}")
        with Salvo(os.path.join(workdir, "spool"), overrides,
                   log_path=os.path.join(workdir, "salvo.log")) as salvo:
            print(f"demo: salvo listening on http://127.0.0.1:{salvo.port} "
                  f"(embedded defaults + {overrides})")
            campaign = build_campaign(args.recipients, domains,
                                      body_bytes=3000, name="demo")
            t0 = time.monotonic()
            cid = salvo.submit_campaign(campaign)
            t_accept = time.monotonic() - t0
            print(f"demo: campaign {cid}: {args.recipients:,} recipients "
                  f"accepted durably in {t_accept:.2f}s")
            last_print = 0.0
            last = (t0, 0)
            rate = 0.0

            def progress(c):
                nonlocal last_print, last, rate
                now = time.monotonic()
                if now - last[0] >= 0.5:
                    rate = (c["delivered"] - last[1]) / (now - last[0])
                    last = (now, c["delivered"])
                if tty:
                    print("\r" + bar(c, args.recipients, rate), end="",
                          flush=True)
                elif now - last_print >= 2:
                    print(bar(c, args.recipients, rate), flush=True)
                    last_print = now

            c = salvo.wait_settled(cid, timeout=args.timeout,
                                   on_progress=progress, poll=0.25)
            elapsed = time.monotonic() - t0
            print("\r" + bar(c, args.recipients, rate) if tty
                  else bar(c, args.recipients, rate))
            print()
            print("demo: summary")
            print(f"  recipients accepted   {c['accepted']:>9,}")
            print(f"  delivered             {c['delivered']:>9,}  "
                  f"(capture MX counted {sink.message_count():,})")
            print(f"  bounced               {c['bounced']:>9,}  "
                  f"({gone}: no such domain)")
            print(f"  deferred              {c['deferred']:>9,}  "
                  f"({down}: MX refuses connections; retried later)")
            print(f"  seconds               {elapsed:>9.1f}  "
                  f"(accept {t_accept:.1f})")
            print(f"  mean delivery rate    "
                  f"{c['delivered'] / elapsed:>9,.0f} msg/s")
            code = salvo.stop()
            print(f"demo: salvo stopped (exit {code}); spool and log in "
                  f"{workdir}")
            return 0 if c["delivered"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
