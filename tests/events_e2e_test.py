"""Recipient events end to end through the real salvo binary and FakeSmtp: a
campaign with a 4xx-then-2xx recipient, a 5xx recipient, a plain one and a
suppressed one; GET /v1/events (filters, paging) and the JSON-lines log agree
on types, attempts, remote host and reply."""
import json
import os
import shutil
import tempfile
import time
import unittest
import urllib.parse

from tests.lib import peers
from tests.lib.salvo import Salvo, metric_value

DOMAIN = "events.salvo.test"


class EventsE2eTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="salvo-events-")
        self.spool = os.path.join(self.work, "spool")

    def tearDown(self):
        shutil.rmtree(self.work, ignore_errors=True)

    def events(self, s, **params):
        status, body = s.request(
            "GET", "/v1/events?" + urllib.parse.urlencode(params))
        self.assertEqual(status, 200, body)
        return body

    def test_api_and_jsonl_record_every_state_change(self):
        with peers.FakeSmtp() as fake:
            with Salvo(self.spool,
                       {"retry.initial": "1s", "retry.max": "2s",
                        "retry.jitter": 0, "delivery.idle_timeout": "1s",
                        "routes": f'[{{domain="{DOMAIN}", host="127.0.0.1", '
                                  f'port={fake.port}}}]'},
                       log_path=os.path.join(self.work, "salvo.log")) as s:
                status, body = s.request("POST", "/v1/suppressions",
                                         {"entries": [f"sup@{DOMAIN}"]})
                self.assertEqual(status, 201, body)
                rcpts = [f"tempfail-once-a@{DOMAIN}", f"reject-rcpt@{DOMAIN}",
                         f"sup@{DOMAIN}", f"ok@{DOMAIN}"]
                status, sub = s.request("POST", "/v1/campaigns", {
                    "from": "shop@shop.salvo.test", "subject": "Hi",
                    "text": "Hello\n",
                    "recipients": [{"email": r} for r in rcpts]})
                self.assertEqual(status, 201, sub)
                cid = sub["id"]
                self.assertEqual(sub["accepted"], 3)
                ids = {r["email"]: r["id"] for r in sub["recipients"]}
                self.assertEqual(set(ids), set(rcpts) - {f"sup@{DOMAIN}"})
                c = s.wait_settled(cid, timeout=60, want_delivered=2)
                c = s.wait_settled(cid, timeout=30)
                self.assertEqual((c["delivered"], c["bounced"]), (2, 1), c)

                got = self.events(s, campaign=cid)
                self.assertIsNone(got["next"])
                seq = [(e["email"], e["type"], e["attempt"])
                       for e in got["events"]]
                tf, rj = rcpts[0], rcpts[1]
                want = {
                    (tf, "accepted", 0), (tf, "deferred", 1),
                    (tf, "delivered", 2), (rj, "accepted", 0),
                    (rj, "bounced", 1), (f"sup@{DOMAIN}", "suppressed", 0),
                    (f"ok@{DOMAIN}", "accepted", 0),
                    (f"ok@{DOMAIN}", "delivered", 1)}
                self.assertEqual(set(seq), want, seq)
                self.assertEqual(len(seq), len(want), seq)
                # One recipient's events come in the order they happened.
                mine = self.events(s, campaign=cid, recipient=ids[tf])
                self.assertEqual([e["type"] for e in mine["events"]],
                                 ["accepted", "deferred", "delivered"])
                deferred, delivered = mine["events"][1], mine["events"][2]
                self.assertIn(str(fake.port), deferred["remote_host"])
                self.assertTrue(deferred["reply"].startswith("451"),
                                deferred)
                self.assertTrue(delivered["reply"].startswith("250"),
                                delivered)
                self.assertLessEqual(deferred["at"], delivered["at"])
                bounced = self.events(s, campaign=cid, type="bounced")
                self.assertEqual(len(bounced["events"]), 1)
                self.assertTrue(
                    bounced["events"][0]["reply"].startswith("550"))
                # Paging by 3 gives the same events.
                paged, after = [], None
                for _ in range(10):
                    params = {"campaign": cid, "limit": 3}
                    if after:
                        params["after"] = after
                    page = self.events(s, **params)
                    paged += page["events"]
                    after = page["next"]
                    if after is None:
                        break
                self.assertEqual(paged, got["events"])
                # Another tenant's key cannot see them; bad input is 400.
                status, _ = s.request("GET", f"/v1/events?campaign={cid}",
                                      key="no-such-key")
                self.assertEqual(status, 401)
                status, body = s.request("GET", "/v1/events?campaign=zz")
                self.assertEqual(status, 400)
                self.assertEqual(body["error"]["field"], "campaign")

                # The JSON-lines log: same events, with the tenant.
                path = os.path.join(self.spool, "events.jsonl")
                deadline = time.monotonic() + 10
                while True:
                    with open(path) as f:
                        lines = [json.loads(l) for l in f if l.strip()]
                    if len(lines) >= len(want) or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                logged = {(e["email"], e["type"], e["attempt"])
                          for e in lines if e["campaign"] == cid}
                self.assertEqual(logged, want)
                self.assertTrue(all(e["tenant"] for e in lines))
                by_key = {(e["email"], e["type"]): e for e in lines}
                self.assertEqual(by_key[(tf, "deferred")]["reply"],
                                 deferred["reply"])
                self.assertEqual(by_key[(tf, "deferred")]["remote_host"],
                                 deferred["remote_host"])
                self.assertGreaterEqual(metric_value(
                    s.metrics(), "salvo_events_logged_total"), len(want))
                self.assertEqual(s.stop(), 0, s.tail_log())


if __name__ == "__main__":
    unittest.main()
