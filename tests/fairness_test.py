"""Fair bulk between tenants that share a destination: tenant alpha queues a
20,000-recipient campaign to one domain, tenant beta then queues 500 to the
same domain against a slow FakeSmtp (10 ms per message, 2 connections, about
200 messages/s). beta's 500 must all be delivered while alpha still has more
than half of its campaign pending (with one bulk lane they wait behind
alpha's 20,000). The two tenants hash to different bulk buckets (4 and 8, see
storage::BulkLaneFor).

Run: /usr/bin/python3 tests/fairness_test.py  (SALVO_BIN=... to pick a binary)
"""
import os
import shutil
import tempfile
import time
import unittest

from tests.lib import peers
from tests.lib.salvo import Salvo, build_campaign

DOMAIN = "shared.salvo.test"
KEYS = {"alpha": "key-alpha", "beta": "key-beta"}


class FairnessTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="salvo-fair-")

    def tearDown(self):
        shutil.rmtree(self.work, ignore_errors=True)

    def test_small_campaign_is_not_starved_by_a_huge_one(self):
        keys = ", ".join(f'{{key="{k}", tenant="{t}"}}' for t, k in KEYS.items())
        with peers.FakeSmtp(delays={".": 0.01}, record_data=False,
                            rcpts_only=True) as fake:
            over = {"routes": f'[{{domain="*", host="127.0.0.1", '
                              f'port={fake.port}}}]',
                    "api_keys": f"[{keys}]",
                    "delivery.max_connections_per_host": 2,
                    "delivery.idle_timeout": "1s"}
            with Salvo(os.path.join(self.work, "spool"), over,
                       log_path=os.path.join(self.work, "salvo.log")) as s:
                def submit(tenant, n):
                    status, body = s.request(
                        "POST", "/v1/campaigns",
                        build_campaign(n, [DOMAIN], 300, name=tenant),
                        key=KEYS[tenant], timeout=120)
                    self.assertEqual(status, 201, body)
                    return body["id"]

                def counts(tenant, cid):
                    status, body = s.request("GET", f"/v1/campaigns/{cid}",
                                             key=KEYS[tenant])
                    self.assertEqual(status, 200, body)
                    return body["counts"]

                big = submit("alpha", 20000)
                # alpha is sending before beta arrives.
                deadline = time.monotonic() + 60
                while counts("alpha", big)["delivered"] < 100:
                    self.assertLess(time.monotonic(), deadline, "alpha stuck")
                    time.sleep(0.05)
                small = submit("beta", 500)
                deadline = time.monotonic() + 90
                while True:
                    b = counts("beta", small)
                    a = counts("alpha", big)
                    if b["delivered"] >= 500:
                        break
                    # Once alpha is half done beta has lost already.
                    self.assertGreater(20000 - a["delivered"], 10000,
                                       f"beta starved: alpha {a} beta {b}")
                    self.assertLess(time.monotonic(), deadline,
                                    f"timed out: alpha {a} beta {b}")
                    time.sleep(0.1)
                self.assertEqual(b["delivered"], 500, b)
                a = counts("alpha", big)
                pending = 20000 - a["delivered"] - a["bounced"]
                self.assertGreater(pending, 10000, a)
                print(f"beta done with alpha at {a}")
                self.assertEqual(s.stop(), 0)

    def test_transactional_mail_gets_the_reserved_connection(self):
        # One bulk connection allowed, each message 0.5 s at the peer: a
        # transactional message must not wait for the bulk campaign's
        # connection; it goes over the reserved one (a second connection).
        with peers.FakeSmtp(delays={".": 0.5}, record_data=False) as fake:
            over = {"routes": f'[{{domain="*", host="127.0.0.1", '
                              f'port={fake.port}}}]',
                    "delivery.max_connections_per_host": 1,
                    "delivery.reserved_connections": 1,
                    "delivery.idle_timeout": "30s"}
            with Salvo(os.path.join(self.work, "spool"), over,
                       log_path=os.path.join(self.work, "salvo.log")) as s:
                bulk = s.submit_campaign(build_campaign(40, [DOMAIN], 300))
                s.wait_settled(bulk, timeout=60, want_delivered=1, poll=0.02)
                status, body = s.request("POST", "/v1/messages", {
                    "from": "app@shop.salvo.test", "to": [f"code@{DOMAIN}"],
                    "subject": "Code", "text": "123456\n"})
                self.assertEqual(status, 201, body)
                s.wait_settled(body["id"], timeout=30, want_delivered=1,
                               poll=0.02)
                b = s.counts(bulk)
                # 40 bulk messages take 20 s on one connection; the
                # transactional one was delivered long before.
                self.assertLess(b["delivered"], 20, b)
                self.assertEqual(len(fake.events("connect")), 2)
                self.assertEqual(s.stop(), 0)


if __name__ == "__main__":
    unittest.main()
