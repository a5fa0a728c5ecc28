"""End-to-end delivery through the real salvo binary against real peers:
dnsmasq for MX records, Postfix's smtp-sink and a real Postfix smtpd as
receiving MXes, and the scripted FakeSmtp for 4xx/5xx/dropping peers."""
import os
import random
import shutil
import subprocess
import tempfile
import time
import unittest

from tests.lib import peers
from tests.lib.salvo import Salvo, build_campaign, metric_value

ZONE = "salvo.test"


def campaign(rcpts, subject="Hello {{first_name}}", text="Hi {{first_name}}\n"):
    return {
        "from": "Sender <sender@shop.salvo.test>",
        "subject": subject,
        "text": text,
        "recipients": [{"email": r, "data": {"first_name": f"N{i}"}}
                       for i, r in enumerate(rcpts)],
    }


class DeliveryTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="salvo-delivery-")

    def tearDown(self):
        shutil.rmtree(self.work, ignore_errors=True)

    def salvo(self, **overrides):
        base = {"retry.initial": "1s", "retry.max": "2s", "retry.jitter": 0,
                "delivery.idle_timeout": "1s"}
        base.update(overrides)
        return Salvo(os.path.join(self.work, "spool"), base,
                     log_path=os.path.join(self.work, "salvo.log"))

    def test_campaign_to_smtp_sink_via_dnsmasq_mx(self):
        domains = [f"d{i}.{ZONE}" for i in range(5)]
        mx = {d: [(10, f"mx.{ZONE}")] for d in domains}
        with peers.Dnsmasq(mx=mx, a={f"mx.{ZONE}": "127.0.0.1"},
                           local=[ZONE]) as dns, peers.SmtpSink() as sink:
            with self.salvo(**{"dns.servers": dns.server,
                               "delivery.smtp_port": sink.port}) as s:
                cid = s.submit_campaign(build_campaign(2000, domains, 2000))
                c = s.wait_settled(cid, timeout=120)
                self.assertEqual(c["accepted"], 2000)
                self.assertEqual(c["delivered"], 2000, c)
                self.assertEqual(c["bounced"] + c["deferred"], 0, c)
                sink.wait_for(2000)
                text = s.metrics()
                self.assertEqual(metric_value(
                    text, "salvo_deliveries_total",
                    {"domain": domains[0], "result": "delivered"}), 400)
                self.assertEqual(s.stop(), 0, s.tail_log())

    def test_real_postfix_smtpd_stores_personalized_messages(self):
        domain = f"pf.{ZONE}"
        with peers.PostfixSmtpd(domains=[domain]) as pf:
            with self.salvo(**{"routes": f'[{{domain="{domain}", '
                               f'host="127.0.0.1", port={pf.port}}}]'}) as s:
                rcpts = [f"user{i}@{domain}" for i in range(10)]
                cid = s.submit_campaign(campaign(
                    rcpts, subject="Hello {{first_name}} \u00e9t\u00e9",
                    text="Hi {{first_name}}\n.leading dot\nend\n"))
                c = s.wait_settled(cid, timeout=60)
                self.assertEqual(c["delivered"], 10, c)
                pf.wait_for(10)
                msg = pf.messages(rcpt=rcpts[3])[0]
                head, body = peers.split_message(msg)
                self.assertIn(b"\nSubject: =?UTF-8?", head)
                self.assertIn(b"Message-ID: <", head)
                self.assertIn(b"MIME-Version: 1.0", head)
                self.assertIn(b"To: user3@" + domain.encode(), head)
                self.assertIn(b"Hi N3", body)
                # Dot-stuffed on the wire, unstuffed by Postfix.
                self.assertIn(b"\n.leading dot", body)

    def test_transient_then_success_permanent_and_dropped_data(self):
        domain = f"fake.{ZONE}"
        with peers.FakeSmtp() as fake:
            with self.salvo(**{"routes": f'[{{domain="{domain}", '
                               f'host="127.0.0.1", port={fake.port}}}]'}) as s:
                rcpts = [f"tempfail-once-a@{domain}", f"reject-rcpt@{domain}",
                         f"drop-in-data@{domain}", f"ok@{domain}"]
                cid = s.submit_campaign(campaign(rcpts))
                # ok and tempfail-once (after one retry) are delivered,
                # reject-rcpt bounces, drop-in-data keeps being deferred.
                c = s.wait_settled(cid, timeout=60, want_delivered=2)
                c = s.wait_settled(cid, timeout=30)
                self.assertEqual(c["delivered"], 2, c)
                self.assertEqual(c["bounced"], 1, c)
                self.assertEqual(c["deferred"], 1, c)
                got = sorted(r for m in fake.messages() for r in m["rcpts"])
                self.assertEqual(got, sorted([f"tempfail-once-a@{domain}",
                                              f"ok@{domain}"]))
                self.assertTrue(fake.events("drop"))

    def test_mx_fallback_null_mx_and_nxdomain(self):
        with peers.SmtpSink() as sink, peers.Dnsmasq(
                mx={f"two.{ZONE}": [(5, f"dead.{ZONE}"), (10, f"mx.{ZONE}")]},
                a={f"dead.{ZONE}": "127.0.0.2", f"mx.{ZONE}": "127.0.0.1",
                   f"implicit.{ZONE}": "127.0.0.1"},
                local=[ZONE],
                # RFC 7505 null MX: preference 0, root name.
                extra_args=[f"--dns-rr=null.{ZONE},15,000000"]) as dns:
            with self.salvo(**{"dns.servers": dns.server,
                               "delivery.smtp_port": sink.port}) as s:
                cid = s.submit_campaign(campaign([
                    f"a@two.{ZONE}", f"b@implicit.{ZONE}", f"c@null.{ZONE}",
                    f"d@nowhere.{ZONE}"]))
                c = s.wait_settled(cid, timeout=60)
                self.assertEqual(c["delivered"], 2, c)  # fallback + implicit MX
                self.assertEqual(c["bounced"], 2, c)    # null MX + NXDOMAIN

    def test_421_moves_on_to_the_next_mx(self):
        domains = [f"f{i}.{ZONE}" for i in range(3)]
        mx = {d: [(10, f"mx1.{ZONE}"), (20, f"mx2.{ZONE}")] for d in domains}
        with peers.SmtpSink(disconnect_421=["MAIL"]) as bad, \
                peers.SmtpSink(host="127.0.0.2", port=bad.port) as good, \
                peers.Dnsmasq(mx=mx, a={f"mx1.{ZONE}": "127.0.0.1",
                                        f"mx2.{ZONE}": "127.0.0.2"},
                              local=[ZONE]) as dns:
            with self.salvo(**{"dns.servers": dns.server,
                               "delivery.smtp_port": bad.port}) as s:
                cid = s.submit_campaign(build_campaign(60, domains, 500))
                c = s.wait_settled(cid, timeout=60)
                self.assertEqual(c["delivered"], 60, c)
                self.assertEqual(c["deferred"] + c["bounced"], 0, c)
                good.wait_for(60)
                self.assertEqual(bad.message_count(), 0)
                self.assertGreater(bad.counters()["sess"], 0)

    def test_failed_opportunistic_tls_falls_back_to_plaintext(self):
        domain = f"badtls.{ZONE}"
        with peers.FakeSmtp(broken_starttls=True) as fake:
            with self.salvo(**{"routes": f'[{{domain="{domain}", '
                               f'host="127.0.0.1", port={fake.port}}}]'}) as s:
                cid = s.submit_campaign(campaign([f"a@{domain}", f"b@{domain}"]))
                c = s.wait_settled(cid, timeout=30)
                self.assertEqual(c["delivered"], 2, c)
                tried = len(fake.events("starttls"))
                self.assertGreaterEqual(tried, 1)
                # The failure is remembered: later connections to that MX
                # go in plaintext without trying TLS again. (Let the idle
                # connection close first, so a new one is made.)
                connects = len(fake.events("connect"))
                time.sleep(2.5)
                cid = s.submit_campaign(campaign([f"e@{domain}"]))
                c = s.wait_settled(cid, timeout=30)
                self.assertEqual(c["delivered"], 1, c)
                self.assertGreater(len(fake.events("connect")), connects)
                self.assertEqual(len(fake.events("starttls")), tried)
        with peers.FakeSmtp(broken_starttls=True) as fake:
            with self.salvo(**{"routes": f'[{{domain="{domain}", '
                               f'host="127.0.0.1", port={fake.port}}}]',
                               "tls_policies": f'[{{domain="{domain}", '
                               f'policy="required"}}]'}) as s:
                cid = s.submit_campaign(campaign([f"c@{domain}"]))
                deadline = time.monotonic() + 20
                while s.counts(cid)["deferred"] < 1:
                    self.assertLess(time.monotonic(), deadline)
                    time.sleep(0.05)
                # Required TLS never falls back: nothing was delivered.
                self.assertEqual(fake.messages(), [])

    def test_identical_content_shares_one_transaction(self):
        domain = f"multi.{ZONE}"
        with peers.FakeSmtp() as fake:
            with self.salvo(**{"routes": f'[{{domain="{domain}", '
                               f'host="127.0.0.1", port={fake.port}}}]',
                               "delivery.max_recipients_per_transaction": 3}) as s:
                to = [f"a@{domain}", f"reject-rcpt@{domain}", f"c@{domain}",
                      f"d@{domain}"]
                status, body = s.request("POST", "/v1/messages", {
                    "from": "app@shop.salvo.test", "to": to,
                    "subject": "Receipt", "text": "Thanks\n"})
                self.assertEqual(status, 201, body)
                c = s.wait_settled(body["id"], timeout=30)
                self.assertEqual(c["delivered"], 3, c)
                self.assertEqual(c["bounced"], 1, c)
                groups = sorted(m["rcpts"] for m in fake.messages())
                # At most 3 per transaction; the 550 at RCPT affected only
                # its recipient.
                self.assertEqual(groups, [[f"a@{domain}", f"c@{domain}"],
                                          [f"d@{domain}"]])

    def test_transactional_mail_does_not_wait_behind_a_campaign(self):
        domain = f"busy.{ZONE}"
        with peers.SmtpSink() as sink:
            with self.salvo(**{"routes": f'[{{domain="*", host="127.0.0.1", '
                               f'port={sink.port}}}]',
                               "delivery.max_connections_per_host": 2}) as s:
                n = 30000
                bulk = s.submit_campaign(build_campaign(n, [domain], 3000))
                s.wait_settled(bulk, timeout=60, want_delivered=1, poll=0.01)
                status, body = s.request("POST", "/v1/messages", {
                    "from": "app@shop.salvo.test", "to": [f"reset@{domain}"],
                    "subject": "Reset", "text": "Your code is 123456\n"})
                self.assertEqual(status, 201, body)
                t = s.wait_settled(body["id"], timeout=30, want_delivered=1,
                                   poll=0.005)
                b = s.counts(bulk)
                self.assertEqual(t["delivered"], 1)
                # The transactional message was delivered while most of the
                # campaign to the same domain was still waiting.
                self.assertLess(b["delivered"], n // 2, b)
                s.wait_settled(bulk, timeout=120)

    def test_pause_resume_cancel(self):
        domain = f"ctl.{ZONE}"
        with peers.SmtpSink() as sink:
            over = {"routes": f'[{{domain="*", host="127.0.0.1", '
                              f'port={sink.port}}}]',
                    "delivery.max_connections_per_host": 1}
            s = self.salvo(**over).start()
            try:
                n = 40000
                cid = s.submit_campaign(build_campaign(n, [domain], 300))
                s.wait_settled(cid, timeout=60, want_delivered=100, poll=0.005)

                def control(action, expect=200):
                    status, body = s.request(
                        "POST", f"/v1/campaigns/{cid}/{action}", {})
                    self.assertEqual(status, expect, body)
                    return body

                self.assertEqual(control("pause")["state"], "paused")
                time.sleep(0.5)  # transactions on the wire finish
                d1 = s.counts(cid)["delivered"]
                time.sleep(1.0)
                d2 = s.counts(cid)["delivered"]
                self.assertEqual(d1, d2, "delivery went on while paused")
                self.assertLess(d2, n)
                control("resume")
                s.wait_settled(cid, timeout=60, want_delivered=d2 + 100,
                               poll=0.005)
                body = control("cancel")
                self.assertEqual(body["state"], "cancelled")
                control("resume", expect=409)
                deadline = time.monotonic() + 30
                while True:
                    c = s.counts(cid)
                    if c["delivered"] + c["cancelled"] == n and \
                            c["in_flight"] == 0:
                        break
                    self.assertLess(time.monotonic(), deadline, c)
                    time.sleep(0.05)
                self.assertGreater(c["cancelled"], 0, c)
                self.assertEqual(c["queued"], 0, c)
                delivered = c["delivered"]
                time.sleep(0.5)
                self.assertEqual(s.counts(cid)["delivered"], delivered)
                self.assertEqual(s.stop(), 0, s.tail_log())
                # The state and the counts survive a restart.
                s = self.salvo(**over).start()
                status, body = s.request("GET", f"/v1/campaigns/{cid}")
                self.assertEqual(body["state"], "cancelled")
                self.assertEqual(body["counts"]["cancelled"], c["cancelled"])
            finally:
                s.stop()

    def test_kill9_loses_no_acknowledged_recipient(self):
        domains = [f"k{i}.{ZONE}" for i in range(4)]
        mx = {d: [(10, f"mx.{ZONE}")] for d in domains}
        n = 20000
        with peers.Dnsmasq(mx=mx, a={f"mx.{ZONE}": "127.0.0.1"},
                           local=[ZONE]) as dns, peers.SmtpSink() as sink:
            over = {"dns.servers": dns.server, "delivery.smtp_port": sink.port,
                    "delivery.max_connections_per_host": 2}
            s = self.salvo(**over).start()
            cid = s.submit_campaign(build_campaign(n, domains, 1000))
            # Acknowledged (201). Kill while delivery is under way.
            kill_at = random.Random(20261123).randrange(500, 5000)
            c = s.wait_settled(cid, timeout=60, want_delivered=kill_at,
                               poll=0.005)
            s.kill9()
            self.assertLess(c["delivered"], n, "killed too late to matter")
            s = self.salvo(**over).start()
            try:
                c = s.wait_settled(cid, timeout=120)
                self.assertEqual(c["accepted"], n)
                self.assertEqual(c["delivered"], n, c)
                # Everything reached the MX at least once; duplicates only
                # for what was in flight at the kill.
                self.assertGreaterEqual(sink.message_count(), n)
            finally:
                self.assertEqual(s.stop(), 0, s.tail_log())

    def test_metrics_pass_promtool(self):
        promtool = "/usr/bin/promtool"
        if not os.path.exists(promtool):
            raise unittest.SkipTest("promtool not installed")
        with peers.SmtpSink() as sink:
            with self.salvo(**{"routes": f'[{{domain="*", host="127.0.0.1", '
                               f'port={sink.port}}}]'}) as s:
                cid = s.submit_campaign(campaign([f"x@m.{ZONE}"]))
                s.wait_settled(cid, timeout=30)
                text = s.metrics()
        for name in ("salvo_deliveries_total", "salvo_messages_accepted_total",
                     "salvo_delivery_latency_seconds_bucket",
                     "salvo_queue_depth", "salvo_smtp_connections"):
            self.assertIn(name, text)
        r = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout + r.stderr, b"", "promtool lint output")

    def test_memory_gauges_match_the_process(self):
        with self.salvo() as s:
            # The stats thread sets them at start and every 2 s after.
            deadline = time.monotonic() + 10
            while True:
                text = s.metrics()
                rss = metric_value(text, "process_resident_memory_bytes") or 0
                if rss > 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            with open(f"/proc/{s.proc.pid}/status") as f:
                vm_rss = next(int(line.split()[1]) * 1024 for line in f
                              if line.startswith("VmRSS:"))
            # Read moments apart: within 25% of the kernel's figure.
            self.assertGreater(rss, 0.75 * vm_rss, text)
            self.assertLess(rss, 1.25 * vm_rss, text)
            for kind in ("block_cache", "memtables", "table_readers"):
                v = metric_value(text, "salvo_storage_memory_bytes",
                                 {"kind": kind})
                self.assertIsNotNone(v, kind)
                self.assertGreaterEqual(v, 0, kind)
                self.assertLess(v, rss, kind)
            # Empty memtables still hold their arenas' first blocks.
            self.assertGreater(metric_value(
                text, "salvo_storage_memory_bytes", {"kind": "memtables"}), 0)
            # The binary runs on jemalloc (engine/BUILD): its figures are
            # there, ordered, and within what the kernel says is resident.
            m = {kind: metric_value(text, "salvo_malloc_bytes",
                                    {"kind": kind})
                 for kind in ("allocated", "active", "resident", "retained")}
            for kind, v in m.items():
                self.assertIsNotNone(v, f"salvo_malloc_bytes {kind}: {text}")
            self.assertGreater(m["allocated"], 0)
            self.assertLessEqual(m["allocated"], m["active"])
            self.assertLessEqual(m["active"], m["resident"])
            self.assertLess(m["resident"], 1.25 * vm_rss)


if __name__ == "__main__":
    unittest.main()
