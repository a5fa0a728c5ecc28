"""Interop with a strictly configured real Postfix smtpd: bare newlines
rejected, strict RFC 821 envelopes, HELO required, STARTTLS offered. The
stored messages are parsed back and checked: every line at most 998 octets,
no bare CR or LF on the wire (Postfix would have refused the message), dot
lines intact, headers and decoded bodies exactly what was submitted."""
import email
import email.header
import email.policy
import os
import shutil
import tempfile
import time
import unittest

from tests.lib import peers
from tests.lib.salvo import Salvo, metric_value

DOMAIN = "strict.salvo.test"

TEXT = ("Dear {{name}},\n"
        ".a line that starts with a dot\n"
        "..two dots\n"
        ".\n"
        "Trailing spaces   \n"
        "Caf\u00e9 cr\u00e8me \u2014 \u65e5\u672c\u8a9e\n"
        + "x" * 1500 + "\n"
        "From the start of a line\n"
        "end\n")
HTML = "<p>Dear {{name}} &amp; co</p>\n<p>" + "y" * 1200 + "</p>\n"


def expected_text(name):
    return TEXT.replace("{{name}}", name)


class InteropTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="salvo-interop-")

    def tearDown(self):
        shutil.rmtree(self.work, ignore_errors=True)

    def test_strict_postfix_stores_exact_messages(self):
        with peers.PostfixSmtpd(domains=[DOMAIN], tls=True, strict=True) as pf:
            route = (f'[{{domain="{DOMAIN}", host="127.0.0.1", '
                     f'port={pf.port}}}]')
            with Salvo(os.path.join(self.work, "spool"), {"routes": route},
                       log_path=os.path.join(self.work, "salvo.log")) as s:
                names = ["Ann", "B\u00e9a \u00d6stberg", "Chen \u9648"]
                cid = s.submit_campaign({
                    "from": "Shop \u00c9t\u00e9 <news@shop.salvo.test>",
                    "subject": "Hello {{name}} \u2014 your order",
                    "text": TEXT, "html": HTML,
                    "headers": {"X-Campaign": "interop"},
                    "recipients": [{"email": f"user{i}@{DOMAIN}",
                                    "data": {"name": n}}
                                   for i, n in enumerate(names)]})
                c = s.wait_settled(cid, timeout=60)
                self.assertEqual(c["delivered"], 3, (c, pf.maillog()[-2000:]))
                pf.wait_for(3)
                for i, name in enumerate(names):
                    raw = pf.messages(rcpt=f"user{i}@{DOMAIN}")[0]
                    self.check_message(raw, name, f"user{i}@{DOMAIN}")

    def test_tls_session_resumed_against_postfix(self):
        """A second connection to the same Postfix resumes the TLS session
        of the first (its ticket), and salvo_smtp_sessions_total says so."""
        with peers.PostfixSmtpd(domains=[DOMAIN], tls=True, strict=True) as pf:
            route = (f'[{{domain="{DOMAIN}", host="127.0.0.1", '
                     f'port={pf.port}}}]')
            overrides = {"routes": route, "delivery.idle_timeout": "200ms"}
            with Salvo(os.path.join(self.work, "spool"), overrides,
                       log_path=os.path.join(self.work, "salvo.log")) as s:
                def send(i):
                    """Delivers one message; the delivery event's tls."""
                    cid = s.submit_campaign({
                        "from": "Shop <news@shop.salvo.test>",
                        "subject": "resume", "text": "hello\n",
                        "recipients": [{"email": f"user{i}@{DOMAIN}"}]})
                    c = s.wait_settled(cid, timeout=60)
                    self.assertEqual(c["delivered"], 1,
                                     (c, pf.maillog()[-2000:]))
                    status, body = s.request(
                        "GET", f"/v1/events?campaign={cid}&type=delivered")
                    self.assertEqual(status, 200, body)
                    return body["events"][0]["tls"]

                def sessions(tls):
                    return metric_value(s.metrics(),
                                        "salvo_smtp_sessions_total",
                                        {"tls": tls}) or 0

                self.assertNotIn("resumed", send(0))
                self.assertEqual(sessions("full"), 1)
                self.assertEqual(sessions("resumed"), 0)
                # The idle connection closes (200 ms), then a new one opens.
                deadline = time.monotonic() + 10
                while (metric_value(s.metrics(), "salvo_smtp_connections")
                       and time.monotonic() < deadline):
                    time.sleep(0.1)
                self.assertIn("resumed", send(1))
                self.assertEqual(sessions("resumed"), 1, pf.maillog()[-2000:])
                self.assertEqual(sessions("full"), 1)
                self.assertEqual(sessions("none"), 0)
                pf.wait_for(2)

    def check_message(self, raw, name, rcpt):
        # Postfix stores LF line ends; on the wire every one was CRLF (bare
        # LF would have been rejected by smtpd_forbid_bare_newline).
        self.assertNotIn(b"\r", raw)
        for line in raw.split(b"\n"):
            self.assertLessEqual(len(line), 998)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        self.assertEqual(str(msg["To"]), rcpt)
        self.assertEqual(str(msg["Subject"]), f"Hello {name} \u2014 your order")
        self.assertEqual(msg["From"].addresses[0].display_name,
                         "Shop \u00c9t\u00e9")
        self.assertEqual(msg["From"].addresses[0].addr_spec,
                         "news@shop.salvo.test")
        self.assertEqual(str(msg["X-Campaign"]), "interop")
        self.assertEqual(str(msg["MIME-Version"]), "1.0")
        self.assertTrue(str(msg["Message-ID"]).startswith("<"))
        self.assertIsNotNone(msg["Date"].datetime)
        self.assertEqual(msg.get_content_type(), "multipart/alternative")
        text = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        # Decoded bodies equal the submission exactly (CRLF -> LF by the
        # MDA), dot lines included.
        self.assertEqual(text.replace("\r\n", "\n"), expected_text(name))
        self.assertEqual(html.replace("\r\n", "\n"),
                         HTML.replace("{{name}}", name.replace("&", "&amp;")))
        # The whole message went over one Received hop from Salvo.
        received = str(msg["Received"])
        self.assertIn("localhost", received)
        # STARTTLS (opportunistic by default) was used.
        self.assertIn("with ESMTPS", received)


if __name__ == "__main__":
    unittest.main()
