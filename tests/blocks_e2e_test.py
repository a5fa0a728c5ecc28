"""Recipient blocks end to end through the salvo binary and smtp-sink: an
upload far larger than [spool] expand_window is delivered completely with
exact counts while the live queue depth (salvo_queue_depth) stays within the
window plus one block; a graceful restart in the middle resumes from the
blocks; cancel of a future campaign counts every block recipient as
cancelled; reschedule moves blocks; GET /v1/events lists one ACCEPTED event
per block recipient."""
import os
import shutil
import socket
import tempfile
import time
import unittest

from tests.lib import peers
from tests.lib.salvo import Salvo, metric_value

WINDOW = 1000
CHUNK = 250


def rfc3339(delta_s=0.0, at=None):
    """UTC time `at` (default: now + delta_s), whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ",
                         time.gmtime(at if at is not None
                                     else time.time() + delta_s))


def ndjson(start, stop, domains=5):
    return "".join(f'{{"email":"u{i}@d{i % domains}.blocks.test",'
                   f'"data":{{"name":"N{i}"}}}}\n'
                   for i in range(start, stop)).encode()


class BlocksE2eTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="salvo-blocks-")

    def tearDown(self):
        shutil.rmtree(self.work, ignore_errors=True)

    def salvo(self, sink, **extra):
        over = {
            "routes": f'[{{domain="*", host="127.0.0.1", port={sink.port}}}]',
            "server.loops": 2,
            "spool.expand_window": WINDOW,
            "limits.upload_chunk_recipients": CHUNK,
            "delivery.max_connections_per_host": 2,
        }
        over.update(extra)
        return Salvo(os.path.join(self.work, "spool"), over,
                     log_path=os.path.join(self.work, "salvo.log"))

    def wait_counts(self, s, cid, pred, timeout, poll=0.1):
        """Polls the campaign's counts until pred(counts) holds; fails the
        test with the last counts after `timeout` s. Returns the counts."""
        deadline = time.monotonic() + timeout
        c = s.counts(cid)
        while not pred(c):
            self.assertLess(time.monotonic(), deadline, c)
            time.sleep(poll)
            c = s.counts(cid)
        return c

    def stream_campaign(self, s, send_at=None):
        c = {"from": "news@shop.blocks.test", "subject": "Hi {{name}}",
             "text": "Hello {{name}}", "stream": True}
        if send_at:
            c["send_at"] = send_at
        return s.submit_campaign(c)

    def test_large_upload_delivers_within_the_window_across_a_restart(self):
        n = 12000
        with peers.SmtpSink() as sink:
            s = self.salvo(sink).start()
            cid = self.stream_campaign(s)
            status, body = s.upload(cid, ndjson(0, n))
            self.assertEqual(status, 200, body)
            self.assertIn(f'"accepted":{n}', body)
            depths, queued_max = [], 0
            restarted = False
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                c = s.counts(cid)
                self.assertEqual(c["accepted"], n, c)
                queued_max = max(queued_max, c["queued"])
                d = metric_value(s.metrics(), "salvo_queue_depth")
                if d is not None:
                    depths.append(d)
                if not restarted and c["delivered"] >= n // 4:
                    self.assertEqual(s.stop(), 0, s.tail_log())
                    s = self.salvo(sink).start()
                    restarted = True
                if c["queued"] == 0 and c["in_flight"] == 0:
                    break
                time.sleep(0.1)
            c = s.wait_settled(cid, timeout=30)
            self.assertTrue(restarted)
            self.assertEqual(c["delivered"], n, c)
            self.assertEqual((c["bounced"], c["expired"], c["cancelled"]),
                             (0, 0, 0), c)
            # The campaign held far more than the window ...
            self.assertGreater(queued_max, 4 * WINDOW)
            # ... while the live queue stayed within it (plus one block).
            self.assertTrue(any(d > 0 for d in depths), depths)
            self.assertLessEqual(max(depths), WINDOW + CHUNK, depths)
            # One ACCEPTED event per recipient, first page in id order.
            status, ev = s.request(
                "GET", f"/v1/events?campaign={cid}&type=accepted&limit=1000")
            self.assertEqual(status, 200, ev)
            self.assertEqual(len(ev["events"]), 1000)
            self.assertEqual(ev["events"][0]["email"], "u0@d0.blocks.test")
            self.assertEqual(ev["events"][999]["email"], "u999@d4.blocks.test")
            self.assertEqual(s.stop(), 0, s.tail_log())

    def test_cancel_and_reschedule_future_blocks(self):
        with peers.SmtpSink() as sink:
            with self.salvo(sink) as s:
                later = self.stream_campaign(s, rfc3339(3600))
                status, body = s.upload(later, ndjson(0, 3000))
                self.assertEqual(status, 200, body)
                doomed = self.stream_campaign(s, rfc3339(3600))
                status, body = s.upload(doomed, ndjson(5000, 6000))
                self.assertEqual(status, 200, body)
                time.sleep(0.5)
                self.assertEqual(s.counts(later)["delivered"], 0)

                status, body = s.request(
                    "POST", f"/v1/campaigns/{doomed}/cancel")
                self.assertEqual(status, 200, body)
                c = self.wait_counts(s, doomed,
                                     lambda c: c["cancelled"] >= 1000, 30)
                self.assertEqual((c["accepted"], c["cancelled"], c["queued"]),
                                 (1000, 1000, 0), c)
                status, ev = s.request(
                    "GET", f"/v1/events?campaign={doomed}&limit=4")
                self.assertEqual([e["type"] for e in ev["events"]],
                                 ["accepted", "cancelled"] * 2, ev)

                status, body = s.request(
                    "POST", f"/v1/campaigns/{later}/reschedule", {})
                self.assertEqual(status, 200, body)
                self.assertEqual(body["rescheduled"], 3000, body)
                c = s.wait_settled(later, timeout=60)
                self.assertEqual(c["delivered"], 3000, c)
                self.assertEqual(s.stop(), 0, s.tail_log())

    def test_reschedule_racing_expansion_moves_every_recipient(self):
        """A campaign far larger than the window is rescheduled while it is
        being expanded and delivered: blocks move on the expander thread,
        then the loops move what was already expanded. Once the answer is
        in, only recipients leased before it (at most max_in_flight_per_loop
        per loop) may still be delivered before the new send_at; afterwards
        every recipient arrives exactly once."""
        n, loops, bound = 40000, 2, 100
        with peers.SmtpSink() as sink:
            with self.salvo(sink, **{"delivery.max_in_flight_per_loop":
                                     bound}) as s:
                cid = self.stream_campaign(s)
                status, body = s.upload(cid, ndjson(0, n))
                self.assertEqual(status, 200, body)
                before = self.wait_counts(
                    s, cid, lambda c: c["delivered"] >= 1000, 60, poll=0.02)
                send_at = time.time() + 6
                status, body = s.request(
                    "POST", f"/v1/campaigns/{cid}/reschedule",
                    {"send_at": rfc3339(at=send_at)})
                self.assertEqual(status, 200, body)
                at_answer = s.counts(cid)
                # Still mid-campaign: blocks were left to move.
                self.assertLess(at_answer["delivered"], n - 10 * WINDOW,
                                at_answer)
                moved = body["rescheduled"]
                self.assertLessEqual(moved, n - before["delivered"], body)
                self.assertGreaterEqual(
                    moved, n - at_answer["delivered"] - loops * bound,
                    (body, at_answer))
                # Up to 1 s before the new time: only the leased ones.
                time.sleep(max(0.0, send_at - 1 - time.time()))
                early = s.counts(cid)
                self.assertLessEqual(
                    early["delivered"], at_answer["delivered"] + loops * bound,
                    (at_answer, early))
                self.assertLessEqual(sink.message_count(),
                                     at_answer["delivered"] + loops * bound)
                c = s.wait_settled(cid, timeout=90)
                self.assertEqual(c["delivered"], n, c)
                self.assertEqual((c["bounced"], c["expired"], c["cancelled"],
                                  c["queued"]), (0, 0, 0, 0), c)
                sink.wait_for(n)
                self.assertEqual(sink.message_count(), n)
                self.assertEqual(s.stop(), 0, s.tail_log())

    def test_deferred_recipients_do_not_hold_the_window(self):
        """Half of a campaign goes to a domain whose MX refuses connections
        (every attempt defers, the retry is a minute away), half to a
        working one. The deferred entries wait in the queue; they must not
        count against the expansion window, or the expander stops once
        WINDOW of them wait and the working domain's recipients never get
        expanded."""
        n = 6 * WINDOW
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        with peers.SmtpSink() as sink:
            routes = (f'[{{domain="d0.blocks.test", host="127.0.0.1", '
                      f'port={closed}}}, {{domain="*", host="127.0.0.1", '
                      f'port={sink.port}}}]')
            with self.salvo(sink, routes=routes) as s:
                cid = self.stream_campaign(s)
                status, body = s.upload(cid, ndjson(0, n, domains=2))
                self.assertEqual(status, 200, body)
                self.wait_counts(
                    s, cid, lambda c: (c["delivered"], c["deferred"]) ==
                    (n // 2, n // 2), 30)
                self.assertEqual(sink.message_count(), n // 2)
                self.assertEqual(s.stop(), 0, s.tail_log())


if __name__ == "__main__":
    unittest.main()
