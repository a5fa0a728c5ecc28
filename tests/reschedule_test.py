"""Reschedule end to end through the salvo binary and Postfix's smtp-sink:
a campaign due in 1 h rescheduled to now is delivered in full; one
rescheduled from now to 1 h ahead while paused delivers nothing after the
resume (its entries are due later) and GET shows the new send_at."""
import datetime
import os
import shutil
import tempfile
import time
import unittest

from tests.lib import peers
from tests.lib.salvo import Salvo, build_campaign

DOMAINS = [f"r{i}.salvo.test" for i in range(3)]


def rfc3339(delta_s):
    t = datetime.datetime.now(datetime.timezone.utc) + \
        datetime.timedelta(seconds=delta_s)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class RescheduleTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="salvo-reschedule-")

    def tearDown(self):
        shutil.rmtree(self.work, ignore_errors=True)

    def salvo(self, sink):
        over = {"routes": f'[{{domain="*", host="127.0.0.1", '
                          f'port={sink.port}}}]',
                "server.loops": 2}
        return Salvo(os.path.join(self.work, "spool"), over,
                     log_path=os.path.join(self.work, "salvo.log"))

    def reschedule(self, s, cid, body, expect=200):
        status, answer = s.request(
            "POST", f"/v1/campaigns/{cid}/reschedule", body)
        self.assertEqual(status, expect, answer)
        return answer

    def test_later_to_now_delivers_everything(self):
        n = 600
        with peers.SmtpSink() as sink:
            s = self.salvo(sink).start()
            try:
                c = build_campaign(n, DOMAINS, 500)
                c["send_at"] = rfc3339(3600)
                cid = s.submit_campaign(c)
                time.sleep(0.5)
                counts = s.counts(cid)
                self.assertEqual(counts["delivered"], 0, counts)
                self.assertEqual(counts["queued"], n, counts)
                body = self.reschedule(s, cid, {})
                self.assertEqual(body["rescheduled"], n, body)
                self.assertNotIn("send_at", body)
                counts = s.wait_settled(cid, timeout=60)
                self.assertEqual(counts["delivered"], n, counts)
                sink.wait_for(n)
                self.assertEqual(sink.message_count(), n)
                # Finished: nothing left to move.
                self.reschedule(s, cid, {}, expect=409)
                self.assertEqual(s.stop(), 0, s.tail_log())
            finally:
                s.stop()

    def test_now_to_later_while_paused_delivers_nothing(self):
        n = 600
        with peers.SmtpSink() as sink:
            s = self.salvo(sink).start()
            try:
                c = build_campaign(n, DOMAINS, 500)
                c["send_at"] = rfc3339(3)  # due in 3 s unless moved
                cid = s.submit_campaign(c)
                status, body = s.request(
                    "POST", f"/v1/campaigns/{cid}/pause", {})
                self.assertEqual(status, 200, body)
                later = rfc3339(3600)
                body = self.reschedule(s, cid, {"send_at": later,
                                                "expires_in": "2h"})
                self.assertEqual(body["rescheduled"], n, body)
                self.assertEqual(body["state"], "paused")
                self.assertEqual(body["send_at"], later)
                status, body = s.request(
                    "POST", f"/v1/campaigns/{cid}/resume", {})
                self.assertEqual(status, 200, body)
                time.sleep(5)  # past the original send_at
                status, body = s.request("GET", f"/v1/campaigns/{cid}")
                self.assertEqual(status, 200, body)
                self.assertEqual(body["send_at"], later)
                self.assertEqual(body["state"], "active")
                self.assertEqual(body["counts"]["delivered"], 0, body)
                self.assertEqual(body["counts"]["queued"], n, body)
                self.assertEqual(sink.message_count(), 0)
                self.assertEqual(s.stop(), 0, s.tail_log())
                # The moves are durable: still due later after a restart.
                s = self.salvo(sink).start()
                time.sleep(1)
                self.assertEqual(s.counts(cid)["delivered"], 0)
                self.assertEqual(s.stop(), 0, s.tail_log())
            finally:
                s.stop()


if __name__ == "__main__":
    unittest.main()
