#!/usr/bin/env python3
"""Scale benchmark: N recipients queued at once, with bounded memory.

Peers as in bench/e2e_bench.py (dnsmasq MX records for D domains, Postfix's
smtp-sink as the MX). Salvo gets two streamed campaigns, both paused while
their recipients are uploaded as CSV in requests of --chunk recipients, so
the queue really holds N: "old" (--old-fraction of N, queued first, so its
entries sort first in every shard) and "live" (the rest). "old" is then
cancelled: its entries are deleted, as delivered ones are, leaving millions
of tombstones in front of the live entries. Measured:
  rss_max_mib   max VmRSS of salvo (sampled every 0.5 s) from start to end
                of the delivery windows, and VmHWM at that point
  rate          recipients delivered per second with N queued, over
                --segments windows of --window/--segments seconds, each
                after resuming "live" (and a 2 s warm-up), "live" paused
                between them
  base_rate     the same with a --baseline recipients queue (fresh spool,
                another salvo process): one run before each segment and one
                after the last; the median counts. Baselines and segments
                alternate because this machine's speed drifts by +-20% over
                minutes; before each baseline the big salvo's CPU use must
                have dropped under 3% (its compactions would slow the
                baseline and flatter the ratio)
  restart_s     kill -9, then seconds from exec of a new salvo on the same
                spool to the first message counted at the sink
Every wait is bounded in time. Prints one line:
salvo_scale queued=N rss_max_mib=.. hwm_mib=.. rate=.. base_rate=..
  rate_ratio=.. restart_s=.. ingest_s=.."""
import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.lib import peers  # noqa: E402
from tests.lib.salvo import Salvo, metric_value  # noqa: E402

TEMPLATE = {
    "from": "Salvo Shop <news@shop.salvo-demo.test>",
    "subject": "Hello {{first_name}}",
    "text": "Dear {{first_name}}, your order ships today.\n",
    "html": "<p>Dear {{first_name}}, your order ships today.</p>\n",
    "stream": True,
}


def rss_kib(pid):
    """(VmRSS, VmHWM) in KiB, or (0, 0) if the process is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


class RssSampler:
    """Samples a process's VmRSS every `period` seconds on a thread."""

    def __init__(self, pid, period=0.5):
        self.pid, self.period = pid, period
        self.max_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.max_kib = max(self.max_kib, rss_kib(self.pid)[0])
            self._stop.wait(self.period)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        return self.max_kib


def check(status, body, what, want=(200, 201)):
    if status not in want:
        raise RuntimeError(f"{what}: {status} {body}")
    return body


def create_paused(salvo, name):
    body = dict(TEMPLATE, name=name)
    cid = check(*salvo.request("POST", "/v1/campaigns", body), "create")["id"]
    check(*salvo.request("POST", f"/v1/campaigns/{cid}/pause"), "pause")
    return cid


def upload(salvo, cid, first, count, domains, chunk, deadline):
    """Uploads recipients first..first+count-1 as CSV in `chunk` requests."""
    i = first
    end = first + count
    while i < end:
        if time.monotonic() > deadline:
            raise TimeoutError(f"ingest not done in time at {i - first}")
        n = min(chunk, end - i)
        rows = [f"u{j}@{domains[j % len(domains)]},C{j}\n"
                for j in range(i, i + n)]
        raw = ("email,first_name\n" + "".join(rows)).encode()
        check(*salvo.request("POST", f"/v1/campaigns/{cid}/recipients",
                             raw=raw, headers={"Content-Type": "text/csv"},
                             timeout=600), "upload")
        i += n


def wait_counts(salvo, cid, pred, timeout, poll=0.2):
    deadline = time.monotonic() + timeout
    while True:
        c = salvo.counts(cid)
        if pred(c) or time.monotonic() > deadline:
            return c
        time.sleep(poll)


def thread_ticks(pid):
    """{thread group: utime + stime ticks} of a process's threads, grouped
    by name with digits dropped (salvo-loop0 and salvo-loop1 -> salvo-loop;
    RocksDB's rocksdb:high0 -> rocksdb:high)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, _, rest = f.read().rpartition(")")
            name = re.sub(r"[0-9]+$", "", head.split("(", 1)[1])
            fields = rest.split()
            out[name] = out.get(name, 0) + int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return out


def per_thread_us(before, after, n):
    """' name=us/msg ...' for thread groups that used CPU between the two
    samples, the busiest first."""
    hz = os.sysconf("SC_CLK_TCK")
    d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return " ".join(f"{k}={v / hz / max(1, n) * 1e6:.1f}"
                    for k, v in sorted(d.items(), key=lambda kv: -kv[1])
                    if v > 0)


def delivery_rate(salvo, sink, cid, queued, window, warmup=2.0):
    """Resumes `cid`; (delivered, seconds) over `window` s after warm-up
    (shorter if 95% of `queued` is reached first). Also prints the CPU time
    salvo and the sink spent per delivered message in the window: this
    machine is CPU-bound (both share 2 cores), so salvo's CPU per message
    is the cost the rate follows, with less of the machine's drift in it."""
    check(*salvo.request("POST", f"/v1/campaigns/{cid}/resume"), "resume")
    time.sleep(warmup)
    t0, d0 = time.monotonic(), salvo.counts(cid)["delivered"]
    cpu0 = (cpu_ticks(salvo.proc.pid), cpu_ticks(sink.proc.pid))
    threads0 = thread_ticks(salvo.proc.pid)
    print(f"# window of {queued} opens", file=sys.stderr, flush=True)
    c = wait_counts(salvo, cid, lambda c: c["delivered"] >= 0.95 * queued,
                    window, poll=0.1)
    dt = max(1e-3, time.monotonic() - t0)
    cpu1 = (cpu_ticks(salvo.proc.pid), cpu_ticks(sink.proc.pid))
    threads1 = thread_ticks(salvo.proc.pid)
    n = c["delivered"] - d0
    rate = n / dt
    us = [(b - a) / os.sysconf("SC_CLK_TCK") / max(1, n) * 1e6
          for a, b in zip(cpu0, cpu1)]
    print(f"# window of {queued} closes: {n} in {dt:.1f}s = {rate:.0f}/s; "
          f"cpu per message: salvo {us[0]:.1f} us, sink {us[1]:.1f} us "
          f"(salvo threads, us:{per_thread_us(threads0, threads1, n)})",
          file=sys.stderr, flush=True)
    return n, dt, us[0]


def cpu_ticks(pid):
    """utime + stime of a process in clock ticks (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def wait_quiet(pid, timeout=60.0, period=1.0, share=0.03):
    """Waits (bounded) until the process uses under `share` of a CPU over
    `period` s; returns the seconds waited."""
    hz = os.sysconf("SC_CLK_TCK")
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        before = cpu_ticks(pid)
        time.sleep(period)
        if (cpu_ticks(pid) - before) / hz < share * period:
            break
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--recipients", type=int, default=10_000_000)
    ap.add_argument("--old-fraction", type=float, default=0.3,
                    help="part of N queued first and then deleted (cancel)")
    ap.add_argument("--baseline", type=int, default=100_000)
    ap.add_argument("--segments", type=int, default=4,
                    help="windows with N queued, alternating with baselines")
    ap.add_argument("--domains", type=int, default=50)
    ap.add_argument("--chunk", type=int, default=100_000)
    ap.add_argument("--window", type=float, default=40,
                    help="total seconds of the N-queued windows")
    ap.add_argument("--timeout", type=float, default=3600,
                    help="bound of the ingest and of the cancel sweep")
    ap.add_argument("--set", action="append", default=[],
                    help="extra salvo --set overrides")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work dir (spools with RocksDB's LOG)")
    args = ap.parse_args()
    zone = "bench.test"
    domains = [f"d{i:03d}.{zone}" for i in range(args.domains)]
    mx = {d: [(10, f"mx.{zone}")] for d in domains}
    work = tempfile.mkdtemp(prefix="salvo-scale-")
    n_old = int(args.recipients * args.old_fraction)
    n_live = args.recipients - n_old
    try:
        with peers.Dnsmasq(mx=mx, a={f"mx.{zone}": "127.0.0.1"},
                           local=[zone]) as dns, peers.SmtpSink() as sink:
            overrides = {"dns.servers": dns.server,
                         "delivery.smtp_port": sink.port}
            for kv in args.set:
                k, _, v = kv.partition("=")
                overrides[k] = v
            log = os.path.join(work, "salvo.log")

            # Baseline: the same flow with a small queue, on a fresh spool
            # in its own salvo process (the big one idles, paused).
            base_rates = []
            base_us = []

            def run_baseline():
                i = len(base_rates)
                with Salvo(os.path.join(work, f"base{i}"), overrides,
                           log_path=log) as s:
                    cid = create_paused(s, "base")
                    upload(s, cid, 0, args.baseline, domains, args.chunk,
                           time.monotonic() + args.timeout)
                    n, dt, us = delivery_rate(s, sink, cid, args.baseline,
                                              args.window)
                    base_rates.append(n / dt)
                    base_us.append(us)
                shutil.rmtree(os.path.join(work, f"base{i}"),
                              ignore_errors=True)

            run_baseline()
            spool = os.path.join(work, "spool")
            salvo = Salvo(spool, overrides, log_path=log).start()
            rss = RssSampler(salvo.proc.pid)
            seg_rates = []
            seg_us = []
            try:
                old = create_paused(salvo, "old")
                live = create_paused(salvo, "live")
                t0 = time.monotonic()
                deadline = t0 + args.timeout
                upload(salvo, old, 0, n_old, domains, args.chunk, deadline)
                upload(salvo, live, n_old, n_live, domains, args.chunk,
                       deadline)
                ingest_s = time.monotonic() - t0
                print(f"# ingested {args.recipients} in {ingest_s:.0f}s, "
                      f"rss max {rss.max_kib >> 10} MiB", file=sys.stderr)
                t1 = time.monotonic()
                check(*salvo.request("POST", f"/v1/campaigns/{old}/cancel"),
                      "cancel")
                c = wait_counts(salvo, old,
                                lambda c: c["cancelled"] >= n_old,
                                max(1.0, deadline - time.monotonic()))
                print(f"# cancelled {c['cancelled']} in "
                      f"{time.monotonic() - t1:.0f}s", file=sys.stderr)
                delivered = seconds = 0.0
                for seg in range(args.segments):
                    if seg > 0:
                        check(*salvo.request(
                            "POST", f"/v1/campaigns/{live}/pause"), "pause")
                        quiet = wait_quiet(salvo.proc.pid)
                        print(f"# big salvo quiet after {quiet:.1f}s",
                              file=sys.stderr)
                        run_baseline()
                    n, dt, us = delivery_rate(salvo, sink, live, n_live,
                                              args.window / args.segments)
                    delivered += n
                    seconds += dt
                    seg_rates.append(n / dt)
                    seg_us.append(us)
                    m = salvo.metrics()
                    print(f"# segment {seg}: rss "
                          f"{rss_kib(salvo.proc.pid)[0] >> 10} MiB (max "
                          f"{rss.max_kib >> 10}); rocksdb " + " ".join(
                              f"{k}={metric_value(m, 'salvo_storage_memory_bytes', {'kind': k}) / 2**20:.0f}"
                              for k in ("block_cache", "memtables",
                                        "table_readers")) + " MiB",
                          file=sys.stderr)
                rate = delivered / seconds
                m = salvo.metrics()
                print("# window results: " + " ".join(
                    f"{r}={metric_value(m, 'salvo_deliveries_total', {'result': r}):.0f}"
                    for r in ("delivered", "requeued", "deferred")),
                    file=sys.stderr)
                hwm = rss_kib(salvo.proc.pid)[1]
                rss_max = rss.stop()
                # Crash while "live" is active, as a real one would.
                time.sleep(0.2)
                salvo.kill9()
                time.sleep(0.3)
                before = sink.message_count()
                t_exec = time.monotonic()
                salvo = Salvo(spool, overrides, log_path=log)
                salvo.start(timeout=120)
                restart_s = None
                while time.monotonic() - t_exec < 120:
                    if sink.message_count() > before:
                        restart_s = time.monotonic() - t_exec
                        break
                    time.sleep(0.02)
                depth = salvo.metrics()
            finally:
                rss.stop()
                salvo.stop()
            print(f"# depth gauge after restart "
                  f"{metric_value(depth, 'salvo_queue_depth')}",
                  file=sys.stderr)
            run_baseline()
            base_rate = statistics.median(base_rates)
            print(f"# baseline {args.baseline}: "
                  + " ".join(f"{r:.0f}/s" for r in base_rates)
                  + f" (median {base_rate:.0f}/s)", file=sys.stderr)
            # Each segment against the mean of the baselines either side.
            pairs = [r / ((base_rates[i] + base_rates[i + 1]) / 2)
                     for i, r in enumerate(seg_rates)]
            print("# segments: " + " ".join(f"{r:.0f}/s" for r in seg_rates)
                  + "; each over its neighbouring baselines: "
                  + " ".join(f"{p:.2f}" for p in pairs), file=sys.stderr)
            print(f"# salvo cpu per message: baseline median "
                  f"{statistics.median(base_us):.1f} us, {args.recipients} "
                  f"queued median {statistics.median(seg_us):.1f} us",
                  file=sys.stderr)
            mib = 1024
            print(f"salvo_scale queued={args.recipients} "
                  f"rss_max_mib={rss_max // mib} hwm_mib={hwm // mib} "
                  f"rate={rate:.0f} base_rate={base_rate:.0f} "
                  f"rate_ratio={rate / max(1.0, base_rate):.2f} "
                  f"restart_s={restart_s if restart_s is None else round(restart_s, 2)} "
                  f"ingest_s={ingest_s:.0f}")
    finally:
        if args.keep:
            print(f"# kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
