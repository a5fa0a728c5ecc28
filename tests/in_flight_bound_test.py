"""The loop-wide bound on leased recipients, through the salvo binary.

1. 20,000 recipients over 4 domains to smtp-sink, 2 loops,
   max_in_flight_per_loop=200: every loop's salvo_delivery_in_flight_peak
   stays <= 200 and reaches the bound (the test means something), every
   recipient is delivered exactly once (counts and the sink's count agree).
2. A transactional message is not held by a full bulk window: one loop,
   max_in_flight_per_loop=50; a campaign to a destination whose MX holds
   every "." for 20 s keeps 50 recipients leased; a transactional message
   to another destination is delivered within 10 s from the
   transactional_in_flight_reserve (without it, it waited for the 20 s).
3. Cancelling a campaign of 5,000 with max_in_flight_per_loop=100: the
   sweep that finishes its entries holds at the bound too (it leased a
   batch of 512 per step, millions in all when the committer lagged).

Run: /usr/bin/python3 tests/in_flight_bound_test.py  (SALVO_BIN=... to pick)
"""
import os
import shutil
import tempfile
import time
import unittest

from tests.lib import peers
from tests.lib.salvo import Salvo, build_campaign, metric_value

DOMAINS = [f"d{i}.bound.test" for i in range(4)]
STUCK = "stuck.bound.test"
FAST = "fast.bound.test"


def peaks(text, loops):
    """salvo_delivery_in_flight_peak of each loop."""
    return [metric_value(text, "salvo_delivery_in_flight_peak",
                         {"loop": str(i)}) for i in range(loops)]


class InFlightBoundTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="salvo-bound-")

    def tearDown(self):
        shutil.rmtree(self.work, ignore_errors=True)

    def test_leased_never_exceed_the_bound(self):
        n, bound = 20000, 200
        with peers.SmtpSink() as sink:
            over = {"routes": f'[{{domain="*", host="127.0.0.1", '
                              f'port={sink.port}}}]',
                    "server.loops": 2,
                    "delivery.max_in_flight_per_loop": bound}
            with Salvo(os.path.join(self.work, "spool"), over,
                       log_path=os.path.join(self.work, "salvo.log")) as s:
                cid = s.submit_campaign(
                    build_campaign(n, DOMAINS, 300, name="bound"))
                c = s.wait_settled(cid, timeout=300)
                self.assertEqual(c["delivered"], n, c)
                sink.wait_for(n, timeout=30)
                time.sleep(0.5)
                self.assertEqual(sink.message_count(), n, "sent twice")
                m = s.metrics()
                p = peaks(m, 2)
                self.assertNotIn(None, p, "no peak gauge")
                self.assertLessEqual(max(p), bound, p)
                self.assertEqual(max(p), bound, "the bound was never reached")
                self.assertEqual(metric_value(m, "salvo_in_flight"), 0)
                self.assertEqual(
                    metric_value(m, "salvo_deliveries_total",
                                 {"result": "requeued"}) or 0, 0)

    def test_transactional_is_not_held_by_a_full_bulk_window(self):
        with peers.FakeSmtp(delays={".": 20}, record_data=False,
                            rcpts_only=True) as stuck, \
                peers.SmtpSink() as sink:
            routes = (f'[{{domain="{STUCK}", host="127.0.0.1", '
                      f'port={stuck.port}}}, {{domain="{FAST}", '
                      f'host="127.0.0.1", port={sink.port}}}]')
            over = {"routes": routes,
                    "server.loops": 1,
                    "spool.shards": 1,
                    "delivery.max_in_flight_per_loop": 50,
                    "delivery.transactional_in_flight_reserve": 10,
                    "delivery.max_connections_per_host": 2}
            with Salvo(os.path.join(self.work, "spool"), over,
                       log_path=os.path.join(self.work, "salvo.log")) as s:
                bulk = s.submit_campaign(
                    build_campaign(500, [STUCK], 300, name="stuck"))
                deadline = time.monotonic() + 30
                while (metric_value(s.metrics(), "salvo_in_flight") or 0) < 50:
                    self.assertLess(time.monotonic(), deadline,
                                    "the bulk window never filled")
                    time.sleep(0.05)
                status, body = s.request("POST", "/v1/messages", {
                    "from": "app@shop.salvo.test", "to": [f"reset@{FAST}"],
                    "subject": "Reset", "text": "Your code is 123456\n"})
                self.assertEqual(status, 201, body)
                t = s.wait_settled(body["id"], timeout=10, want_delivered=1,
                                   poll=0.02)
                self.assertEqual(t["delivered"], 1, t)
                self.assertEqual(s.counts(bulk)["delivered"], 0)
                self.assertLessEqual(peaks(s.metrics(), 1)[0], 60)

    def test_cancel_sweep_stays_within_the_bound(self):
        n, bound = 5000, 100
        with peers.SmtpSink() as sink:
            over = {"routes": f'[{{domain="*", host="127.0.0.1", '
                              f'port={sink.port}}}]',
                    "server.loops": 1,
                    "delivery.max_in_flight_per_loop": bound}
            with Salvo(os.path.join(self.work, "spool"), over,
                       log_path=os.path.join(self.work, "salvo.log")) as s:
                body = build_campaign(n, DOMAINS, 300, name="gone")
                cid = s.submit_campaign(body)
                status, resp = s.request("POST", f"/v1/campaigns/{cid}/cancel")
                self.assertEqual(status, 200, resp)
                c = s.wait_settled(cid, timeout=120)
                self.assertEqual(c["delivered"] + c["cancelled"], n, c)
                self.assertGreater(c["cancelled"], 0, c)
                self.assertLessEqual(peaks(s.metrics(), 1)[0], bound)


if __name__ == "__main__":
    unittest.main()
