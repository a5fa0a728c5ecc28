"""STARTTLS with certificate verification and session resumption against a
real Postfix smtpd, through the salvo binary. A throwaway CA (TestCa) signs
the MX certificate; dnsmasq serves MX records naming it; Salvo trusts the CA
through tls.ca_file and sends with [[tls_policies]] required_verify.

- CA-signed cert with the MX name: delivered, event "tls" names the version
  and cipher and says "verified"; the same MX reached under a name not in
  the certificate: deferred naming the verification failure, nothing stored.
- A cert with the right name from another CA: deferred, nothing stored.
- Two batches with a pause longer than delivery.idle_timeout: the second
  connection resumes the first one's TLS session (Postfix logs "Reusing old
  session" at smtpd_tls_loglevel 2, the event says "resumed"); with Postfix
  session tickets off, neither happens.
- A tls.ca_file that cannot be loaded stops the start with a clear error.
"""
import os
import re
import shutil
import tempfile
import time
import unittest
import urllib.parse

from tests.lib import peers
from tests.lib.salvo import Salvo

ZONE = "tlsv.salvo.test"
GOOD = f"good.{ZONE}"      # MX mx.good.<zone>: the certificate's name
WRONG = f"wrong.{ZONE}"    # MX mx.wrong.<zone>: same Postfix, name not in cert
TLS_RE = re.compile(r"^TLSv1\.[23] [A-Z0-9_-]+ verified( resumed)?$")
REUSED = "Reusing old session"
QUIT_RE = re.compile(r"disconnect from .* starttls=1 .*quit=1")


def campaign(rcpts):
    return {"from": "Sender <sender@shop.salvo.test>", "subject": "Hi",
            "text": "Hello\n", "recipients": [{"email": r} for r in rcpts]}


class TlsVerifyTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="salvo-tlsv-")
        self.ca = peers.TestCa(os.path.join(self.work, "ca"))
        self.good_chain = self.ca.issue([f"mx.{GOOD}"])

    def tearDown(self):
        shutil.rmtree(self.work, ignore_errors=True)

    def dns(self):
        return peers.Dnsmasq(
            mx={GOOD: [(10, f"mx.{GOOD}")], WRONG: [(10, f"mx.{WRONG}")]},
            a={f"mx.{GOOD}": "127.0.0.1", f"mx.{WRONG}": "127.0.0.1"},
            local=[ZONE])

    def postfix(self, chain, **main_cf):
        return peers.PostfixSmtpd(domains=[GOOD, WRONG], tls=True,
                                  tls_chain=chain, main_cf=main_cf,
                                  hostname=f"mx.{GOOD}")

    def salvo(self, dns, pf, **overrides):
        base = {"dns.servers": dns.server, "delivery.smtp_port": pf.port,
                "tls.ca_file": self.ca.cert_file,
                "tls_policies": f'[{{domain="{GOOD}", '
                                f'policy="required_verify"}}, '
                                f'{{domain="{WRONG}", '
                                f'policy="required_verify"}}]',
                "retry.initial": "1h", "retry.max": "2h",
                "delivery.idle_timeout": "1s"}
        base.update(overrides)
        return Salvo(os.path.join(self.work, "spool"), base,
                     log_path=os.path.join(self.work, "salvo.log"))

    def events(self, s, cid, kind):
        query = urllib.parse.urlencode({"campaign": cid, "type": kind})
        status, body = s.request("GET", "/v1/events?" + query)
        self.assertEqual(status, 200, body)
        return body["events"]

    def wait_deferred(self, s, cid, n):
        deadline = time.monotonic() + 30
        while True:
            c = s.counts(cid)
            self.assertEqual(c["delivered"], 0, c)
            if c["deferred"] >= n:
                return
            self.assertLess(time.monotonic(), deadline, c)
            time.sleep(0.1)

    def deliver(self, s, pf, rcpts):
        cid = s.submit_campaign(campaign(rcpts))
        c = s.wait_settled(cid, timeout=60)
        self.assertEqual(c["delivered"], len(rcpts),
                         (c, pf.maillog()[-3000:], s.tail_log()))
        events = self.events(s, cid, "delivered")
        self.assertEqual(len(events), len(rcpts), events)
        return events

    def test_required_verify_delivers_and_rejects_a_wrong_name(self):
        with self.dns() as dns, self.postfix(self.good_chain) as pf, \
                self.salvo(dns, pf) as s:
            rcpts = [f"u{i}@{GOOD}" for i in range(3)]
            for e in self.deliver(s, pf, rcpts):
                self.assertRegex(e["tls"], TLS_RE, e)
                self.assertTrue(e["remote_host"].startswith(f"mx.{GOOD}["), e)
            pf.wait_for(3)
            self.assertIn("TLS connection established", pf.maillog())

            cid = s.submit_campaign(campaign([f"a@{WRONG}", f"b@{WRONG}"]))
            self.wait_deferred(s, cid, 2)
            deferred = self.events(s, cid, "deferred")
            self.assertEqual(len(deferred), 2, deferred)
            for e in deferred:
                self.assertIn("TLS handshake failed", e["reply"], e)
                self.assertIn("certificate", e["reply"], e)
                self.assertEqual(e["tls"], "", e)
            self.assertEqual(self.events(s, cid, "delivered"), [])
            time.sleep(0.5)
            self.assertEqual(len(pf.messages()), 3)
            for r in (f"a@{WRONG}", f"b@{WRONG}"):
                self.assertEqual(pf.messages(rcpt=r), [])

    def test_required_verify_rejects_a_cert_from_another_ca(self):
        other = peers.TestCa(os.path.join(self.work, "other"), "Other CA")
        chain = other.issue([f"mx.{GOOD}"])
        with self.dns() as dns, self.postfix(chain) as pf, \
                self.salvo(dns, pf) as s:
            cid = s.submit_campaign(campaign([f"c@{GOOD}"]))
            self.wait_deferred(s, cid, 1)
            (e,) = self.events(s, cid, "deferred")
            self.assertIn("TLS handshake failed: certificate", e["reply"], e)
            time.sleep(0.5)
            self.assertEqual(pf.messages(), [])

    def resumption(self, **main_cf):
        """Two batches on two connections; returns (first events, second
        events, Postfix log)."""
        with self.dns() as dns, \
                self.postfix(self.good_chain, smtpd_tls_loglevel="2",
                             **main_cf) as pf, \
                self.salvo(dns, pf,
                           **{"delivery.max_connections_per_host": 1}) as s:
            first = self.deliver(s, pf, [f"f{i}@{GOOD}" for i in range(2)])
            self.assertNotIn(REUSED, pf.maillog())
            # Salvo closes the idle connection after 1 s: wait for Postfix
            # to log it, so the second batch needs a new connection.
            # (The port probe's "disconnect from" has no quit=1.)
            peers._poll(lambda: QUIT_RE.search(pf.maillog()), 20,
                        "the idle connection closed")
            second = self.deliver(s, pf, [f"s{i}@{GOOD}" for i in range(2)])
            log = pf.maillog()
            # One TLS connection per batch.
            self.assertEqual(log.count("TLS connection established"), 2,
                             log[-3000:])
            pf.wait_for(4)
            return first, second, log

    def test_second_connection_resumes_the_tls_session(self):
        first, second, log = self.resumption()
        for e in first:
            self.assertNotIn("resumed", e["tls"], e)
        for e in second:
            self.assertRegex(e["tls"], TLS_RE, e)
            self.assertTrue(e["tls"].endswith(" verified resumed"), e)
        self.assertEqual(log.count(REUSED), 1, log[-3000:])

    def test_no_resumption_when_postfix_issues_no_tickets(self):
        # No session cache database and no ticket cipher: nothing to resume.
        first, second, log = self.resumption(tls_session_ticket_cipher="")
        for e in first + second:
            self.assertRegex(e["tls"], TLS_RE, e)
            self.assertNotIn("resumed", e["tls"], e)
        self.assertNotIn(REUSED, log)

    def test_unloadable_ca_file_stops_the_start(self):
        for bad in (os.path.join(self.work, "missing.pem"),
                    self.good_chain[0] + ".txt"):
            with open(self.good_chain[0] + ".txt", "w") as f:
                f.write("not a certificate\n")
            s = Salvo(os.path.join(self.work, "spool"),
                      {"tls.ca_file": bad},
                      log_path=os.path.join(self.work, "bad.log"))
            with self.assertRaises(RuntimeError) as err:
                s.start()
            s.stop()
            self.assertIn(f"tls.ca_file: cannot load CA file {bad}",
                          str(err.exception))


if __name__ == "__main__":
    unittest.main()
