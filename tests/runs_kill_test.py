"""kill -9 during the delivery of a streamed upload, whose recipients are
queued as run entries (storage/queue_store.h: one queue key per shard's
slice of an upload block; a member's outcome leaves the key, which goes once
every member is done). After each restart the runs are of an earlier store
epoch, so the delivery loop reads their members' events and skips those
whose outcome was written (salvo_delivery_run_members_skipped_total).
Checked at the end: every recipient delivered (none lost), counts exact, the
skip really happened, and duplicates stay within the transactions in flight
at each kill: re-sending the delivered members of every partly done run
would duplicate thousands."""
import contextlib
import os
import random
import shutil
import tempfile
import time
import unittest

from tests.lib import peers
from tests.lib.salvo import Salvo, metric_value, round_robin_routes

N = 24000
KILLS = 5
SEED = 20261205
SINKS = 2
DOMAINS = 5
CHUNK = 2000           # limits.upload_chunk_recipients: 400 per domain
TEMPFAIL_PERCENT = 5   # first-attempt 451s: members deferred out of runs
CONNECTIONS = 2
ZONE = "runs.test"
# As in kill_restart_test: what the sinks accepted and salvo had not yet
# written when it died, one recipient per transaction in flight.
MAX_DUPLICATES_PER_KILL = CONNECTIONS * (os.cpu_count() or 1) * SINKS


def ndjson(domains, start, stop):
    return "".join(f'{{"email":"user{i}@{domains[i % len(domains)]}",'
                   f'"data":{{"n":"{i}"}}}}\n'
                   for i in range(start, stop)).encode()


class RunsKillTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="salvo-runs-kill-")

    def tearDown(self):
        shutil.rmtree(self.work, ignore_errors=True)

    def test_kills_during_a_streamed_campaign_lose_and_repeat_nothing(self):
        domains = [f"r{i}.{ZONE}" for i in range(DOMAINS)]
        rng = random.Random(SEED)
        with contextlib.ExitStack() as stack:
            sinks = [stack.enter_context(peers.FakeSmtp(
                tempfail_percent=TEMPFAIL_PERCENT, rcpts_only=True,
                record_data=False)) for _ in range(SINKS)]
            self.deliver_with_kills(domains, rng, sinks)

    def deliver_with_kills(self, domains, rng, sinks):
        s = None
        try:
            over = {"routes": round_robin_routes(
                        domains, [x.port for x in sinks]),
                    "retry.initial": "1s", "retry.max": "2s",
                    "retry.jitter": 0, "delivery.idle_timeout": "1s",
                    "limits.upload_chunk_recipients": CHUNK,
                    "delivery.max_connections_per_host": CONNECTIONS}
            spool = os.path.join(self.work, "spool")
            log = os.path.join(self.work, "salvo.log")

            def start():
                return Salvo(spool, over, log_path=log).start()

            s = start()
            cid = s.submit_campaign({
                "from": "news@shop.runs.test", "subject": "Hi {{n}}",
                "text": "Hello {{n}}", "stream": True})
            status, body = s.upload(cid, ndjson(domains, 0, N))
            self.assertEqual(status, 200, body)
            thresholds = sorted(rng.randrange(N // 20, N * 8 // 10)
                                for _ in range(KILLS))
            skipped = 0
            last = 0
            for k, threshold in enumerate(thresholds):
                deadline = time.monotonic() + 120
                while last < threshold:
                    self.assertLess(time.monotonic(), deadline, (k, last))
                    time.sleep(0.02)
                    c = s.counts(cid)
                    self.assertGreaterEqual(c["delivered"], last, c)
                    last = c["delivered"]
                time.sleep(rng.uniform(0.0, 0.3))
                # This process's skips of the runs it read after its start.
                skipped += metric_value(
                    s.metrics(), "salvo_delivery_run_members_skipped_total") or 0
                s.kill9()
                time.sleep(0.2)  # the sinks finish what salvo had sent
                s = start()
                c = s.counts(cid)
                self.assertEqual(c["accepted"], N, c)
                self.assertGreaterEqual(c["delivered"], last, c)
                last = c["delivered"]
            c = s.wait_settled(cid, timeout=180, want_delivered=N)
            c = s.wait_settled(cid, timeout=30)
            skipped += metric_value(
                s.metrics(), "salvo_delivery_run_members_skipped_total") or 0
            self.assertEqual(c["delivered"], N, c)
            self.assertEqual(
                (c["queued"], c["in_flight"], c["deferred"], c["bounced"],
                 c["expired"]), (0, 0, 0, 0, 0), c)
            self.assertEqual(s.stop(), 0, s.tail_log())

            want = {f"user{i}@{domains[i % DOMAINS]}" for i in range(N)}
            _, duplicates = peers.assert_each_delivered(self, sinks, want)
            print(f"\nruns_kill: N={N} kills={KILLS} skipped={skipped:.0f} "
                  f"duplicates={duplicates}")
            # Members done before a kill were found and not sent again.
            self.assertGreater(skipped, 0)
            self.assertLessEqual(duplicates, KILLS * MAX_DUPLICATES_PER_KILL)
        finally:
            if s is not None and s.proc is not None:
                s.kill9()


if __name__ == "__main__":
    unittest.main()
