"""Full destinations stop their scan lane instead of churning requeues.

1. One domain, max_ready_per_domain=50, 3,000 recipients to smtp-sink: all
   are delivered and salvo_deliveries_total{result="requeued"} stays 0 (the
   old scan requeued every leased entry past the 50 ready ones: thousands of
   RocksDB moves), while salvo_scan_lane_blocks_total shows the lane waited.
2. A slow destination (FakeSmtp, 0.2 s per message, one connection) and a
   fast one (smtp-sink) share the one shard and bulk lane, the slow one's
   entries first: after full_destination_requeue_after (1 s) the slow one's
   entries are requeued and the fast one's 300 are all delivered while the
   slow one still has most of its 200 pending.

Run: /usr/bin/python3 tests/full_destination_test.py  (SALVO_BIN=... to pick)
"""
import os
import shutil
import tempfile
import time
import unittest

from tests.lib import peers
from tests.lib.salvo import Salvo, build_campaign, metric_value

SLOW = "slow.salvo.test"
FAST = "fast.salvo.test"


class FullDestinationTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="salvo-full-")

    def tearDown(self):
        shutil.rmtree(self.work, ignore_errors=True)

    def test_one_domain_no_requeue_churn(self):
        with peers.SmtpSink() as sink:
            over = {"routes": f'[{{domain="*", host="127.0.0.1", '
                              f'port={sink.port}}}]',
                    "delivery.max_ready_per_domain": 50,
                    # Generous: the sink drains 25 messages long before.
                    "delivery.full_destination_requeue_after": "30s"}
            with Salvo(os.path.join(self.work, "spool"), over,
                       log_path=os.path.join(self.work, "salvo.log")) as s:
                cid = s.submit_campaign(
                    build_campaign(3000, [FAST], 300, name="one"))
                c = s.wait_settled(cid, timeout=120)
                self.assertEqual(c["delivered"], 3000, c)
                m = s.metrics()
                requeued = metric_value(m, "salvo_deliveries_total",
                                        {"result": "requeued"}) or 0
                blocks = metric_value(m, "salvo_scan_lane_blocks_total") or 0
                self.assertEqual(requeued, 0, "requeue churn")
                self.assertGreater(blocks, 0, "the lane never waited")

    def test_slow_destination_lets_fast_one_through(self):
        with peers.FakeSmtp(delays={".": 0.2}, record_data=False,
                            rcpts_only=True) as slow, peers.SmtpSink() as sink:
            routes = (f'[{{domain="{SLOW}", host="127.0.0.1", '
                      f'port={slow.port}}}, {{domain="{FAST}", '
                      f'host="127.0.0.1", port={sink.port}}}]')
            over = {"routes": routes,
                    "server.loops": 1,
                    "spool.shards": 1,
                    "delivery.max_connections_per_host": 1,
                    "delivery.max_ready_per_domain": 20,
                    "delivery.full_destination_requeue_after": "1s"}
            with Salvo(os.path.join(self.work, "spool"), over,
                       log_path=os.path.join(self.work, "salvo.log")) as s:
                slow_id = s.submit_campaign(
                    build_campaign(200, [SLOW], 300, name="slow"))
                time.sleep(0.05)  # the fast entries sort after the slow ones
                fast_id = s.submit_campaign(
                    build_campaign(300, [FAST], 300, name="fast"))
                c = s.wait_settled(fast_id, timeout=60, want_delivered=300)
                self.assertEqual(c["delivered"], 300, c)
                slow_counts = s.counts(slow_id)
                self.assertLess(slow_counts["delivered"], 150, slow_counts)
                m = s.metrics()
                requeued = metric_value(m, "salvo_deliveries_total",
                                        {"domain": SLOW,
                                         "result": "requeued"}) or 0
                self.assertGreater(requeued, 0, "no fallback requeue")


if __name__ == "__main__":
    unittest.main()
