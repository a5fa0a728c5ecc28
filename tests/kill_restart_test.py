"""kill -9 the salvo engine KILLS times while it delivers an N-recipient
campaign, restarting it on the same spool each time (issue 3 item 9a).

Peers: SINKS FakeSmtp processes (--rcpts-only, --tempfail-percent 5: 451 on
the first RCPT of ~5% of the addresses), reached through static routes, one
domain per route. The kill moments come from a seeded RNG: a delivered-count
threshold spread over the whole run plus a random delay. After every restart
salvo must come up with the campaign intact and counts that never decrease.
At the end salvo's counts show delivered == accepted == N, and the sinks' own
records show every address at least once and at most N/1000 duplicates.
Run: SALVO_BIN=.../engine/salvo /usr/bin/python3 -m unittest -v
tests.kill_restart_test (single-threaded).
"""
import json
import os
import random
import shutil
import tempfile
import time
import unittest
import zlib

from tests.lib import peers
from tests.lib.salvo import Salvo, build_campaign, round_robin_routes

N = 100000            # recipients in the campaign
KILLS = 20            # kill -9s while delivering
SEED = 20261124       # kill moments
SINKS = 2             # FakeSmtp processes (each ~1,600 msg/s on this machine)
DOMAINS = 4           # recipient domains, routed round-robin to the sinks
TEMPFAIL_PERCENT = 5  # first-attempt 451s at the sinks
BODY_BYTES = 300
CONNECTIONS = 2       # delivery.max_connections_per_host (per loop)
ZONE = "salvo.test"
# A kill duplicates what the sinks accepted but salvo had not yet written:
# every duplicate has exactly one stored DELIVERED event (its first copy's
# outcome was never written), and its first copy lies within the last few
# lines the sink logged before the kill or after it (tests/kill_restart_diag
# .py). That is the transactions in flight, one recipient each, from the
# sink's log line (written before its 250) to salvo's write at the end of
# the loop iteration that read the 250: the round trip on loaded cores, so
# duplicates per kill grow with the transactions in flight (connections x
# loops x sinks) and with the load. Measured (2 cores, load 2.6-11): 16
# connections per host per loop gave 330 duplicates, 4 gave 77-92, 2 gave
# 42 and 42 (at about a third of the rate). A WAL sync that held loop writes
# back once cost 40 duplicates in one kill (outcomes queued behind a slow
# fsync); with room on the disk syncs no longer hold them (storage
# sync_gate_test).
MAX_DUPLICATES_PER_KILL = CONNECTIONS * (os.cpu_count() or 1) * SINKS
DUPLICATE_TARGET = N // 1000


def duplicates_per_kill(sinks, marks):
    """Attributes each duplicate delivery to the kill it followed: the first
    acceptance of the address lies in the sink's log before that kill's mark
    (log size after the kill) and after the previous one. A diagnostic."""
    result = [0] * (len(marks) + 1)
    for j, sink in enumerate(sinks):
        seen = {}
        offset = 0
        with open(sink.log_path, "rb") as f:
            for line in f:
                end = offset + len(line)
                if not line.startswith(b"!"):
                    for address in line.split():
                        if address in seen:
                            result[seen[address]] += 1
                        else:
                            seen[address] = sum(1 for m in marks
                                                if m[j] < end)
                offset = end
    return result


def duplicates_at_kill(sinks, pre_marks, marks):
    """Duplicates whose first acceptance the sinks logged between the moment
    just before a kill and 0.2 s after it: transactions salvo had sent whose
    250 it had not read (or not yet written) when it died. A diagnostic."""
    total = 0
    for j, sink in enumerate(sinks):
        windows = [(p[j], m[j]) for p, m in zip(pre_marks, marks)]
        first = {}
        offset = 0
        with open(sink.log_path, "rb") as f:
            for line in f:
                if not line.startswith(b"!"):
                    for address in line.split():
                        if address in first:
                            first[address][1] += 1
                        else:
                            first[address] = [offset, 0]
                offset += len(line)
        for at, extra in first.values():
            if extra and any(lo <= at < hi for lo, hi in windows):
                total += extra
    return total


class KillRestartTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="salvo-kill20-")
        self.log = os.path.join(self.work, "salvo.log")

    def tearDown(self):
        if os.environ.get("SALVO_KEEP_PEERS"):
            return
        shutil.rmtree(self.work, ignore_errors=True)

    def check_counts(self, c, last, when):
        """Counts of a live campaign: nothing lost, nothing going back."""
        self.assertEqual(c["accepted"], N, (when, c))
        self.assertEqual(c["bounced"] + c["expired"], 0, (when, c))
        for key in ("delivered",):
            self.assertGreaterEqual(c[key], last[key], (when, key, c, last))
        self.assertLessEqual(c["delivered"], N, (when, c))

    def test_twenty_kill9s_lose_nothing_and_duplicate_little(self):
        domains = [f"kr{i}.{ZONE}" for i in range(DOMAINS)]
        rng = random.Random(SEED)
        started = time.monotonic()
        s = None
        sinks = [peers.FakeSmtp(tempfail_percent=TEMPFAIL_PERCENT,
                                rcpts_only=True, record_data=False)
                 for _ in range(SINKS)]
        try:
            for sink in sinks:
                sink.__enter__()
            over = {"routes": round_robin_routes(
                        domains, [x.port for x in sinks]),
                    "retry.initial": "1s", "retry.max": "2s",
                    "retry.jitter": 0, "delivery.idle_timeout": "1s",
                    "delivery.max_connections_per_host": CONNECTIONS}
            spool = os.path.join(self.work, "spool")

            def start():
                return Salvo(spool, over, log_path=self.log).start()

            s = start()
            t0 = time.monotonic()
            cid = s.submit_campaign(build_campaign(N, domains, BODY_BYTES,
                                                   name="kill20"))
            submit_s = time.monotonic() - t0
            last = s.counts(cid)
            self.check_counts(last, {"delivered": 0}, "after submit")

            # Kill moments: thresholds of delivered recipients spread over
            # the whole run, each plus a random delay of delivery time.
            thresholds = sorted(rng.randrange(N // 50, N * 9 // 10)
                                for _ in range(KILLS))
            killed_at = []
            marks = []  # per kill: each sink's log size just after it
            pre_marks = []  # per kill: each sink's log size just before it
            for k, threshold in enumerate(thresholds):
                deadline = time.monotonic() + 120
                while last["delivered"] < threshold:
                    self.assertLess(time.monotonic(), deadline,
                                    (k, threshold, last))
                    time.sleep(0.02)
                    c = s.counts(cid)
                    self.check_counts(c, last, f"before kill {k}")
                    last = c
                time.sleep(rng.uniform(0.0, 0.5))
                c = s.counts(cid)
                self.check_counts(c, last, f"at kill {k}")
                last = c
                pre_marks.append([os.path.getsize(x.log_path) for x in sinks])
                s.kill9()
                killed_at.append(last["delivered"])
                # Let the sinks finish what salvo sent before it died.
                time.sleep(0.2)
                marks.append([os.path.getsize(x.log_path) for x in sinks])
                s = start()
                c = s.counts(cid)
                self.check_counts(c, last, f"restart {k}")
                last = c
            self.assertLess(killed_at[-1], N, "last kill came after the end")

            c = s.wait_settled(cid, timeout=240, want_delivered=N)
            c = s.wait_settled(cid, timeout=30)
            self.check_counts(c, last, "final")
            self.assertEqual(c["delivered"], N, c)
            self.assertEqual(c["queued"] + c["in_flight"] + c["deferred"], 0,
                             c)
            self.assertEqual(s.stop(), 0, s.tail_log())

            # The sinks' own records of accepted messages.
            want = {f"user{i}@{domains[i % DOMAINS]}" for i in range(N)}
            _, duplicates = peers.assert_each_delivered(self, sinks, want)
            refused = set()
            for sink in sinks:
                refused.update(r["arg"] for r in sink.events("reply"))
            # For tests/kill_restart_diag.py (kept with SALVO_KEEP_PEERS=1).
            with open(os.path.join(self.work, "diag.json"), "w") as f:
                json.dump({"spool": spool, "campaign": cid, "domains": domains,
                           "sinks": [x.log_path for x in sinks],
                           "pre_marks": pre_marks, "marks": marks,
                           "killed_at": killed_at}, f)
            per_kill = duplicates_per_kill(sinks, marks)
            at_kill = duplicates_at_kill(sinks, pre_marks, marks)
            # The 451s happened, to the addresses the hash chose.
            expect_refused = {a for a in want if zlib.crc32(a.encode())
                              % 10000 < TEMPFAIL_PERCENT * 100}
            self.assertEqual(refused, expect_refused)
            elapsed = time.monotonic() - started
            print(f"\nkill_restart: N={N} kills={KILLS} at delivered="
                  f"{killed_at} submit={submit_s:.1f}s tempfailed="
                  f"{len(refused)} duplicates={duplicates} "
                  f"({100.0 * duplicates / N:.3f}%) per kill={per_kill} "
                  f"accepted_across_kill={at_kill} "
                  f"total={elapsed:.1f}s")
            self.assertLessEqual(max(per_kill), MAX_DUPLICATES_PER_KILL,
                                 per_kill)
            # Issue 3's bound: at most 0.1% duplicates over the 20 kills.
            self.assertLessEqual(duplicates, DUPLICATE_TARGET, per_kill)
        finally:
            if s is not None and s.proc is not None:
                s.kill9()
            for sink in sinks:
                if sink.dir is not None:
                    sink.__exit__(None, None, None)


if __name__ == "__main__":
    unittest.main()
