"""Self-tests of the integration-test peers in tests/lib/peers.py.

Each peer is driven only by Python's smtplib / socket and must do what the
integration tests will rely on: count or store what it received, inject the
replies it promises, answer DNS as configured, and leave no process behind.
Run: bazel test //tests:peers_test (or tests/run_py_test.sh tests/peers_test.py).
"""

import os
import smtplib
import socket
import ssl
import time
import unittest

from tests.lib import peers
from tests.lib import procs


def _group_gone(pgid):
    return not procs.group_alive(pgid)


class SmtpConn:
    """A raw SMTP client over a socket: write bytes, read whole replies."""

    def __init__(self, port):
        self.sock = socket.create_connection((peers.HOST, port), timeout=10)
        self.file = self.sock.makefile("rb")

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        """(code, [lines]) of one possibly multi-line reply; (None, []) on EOF."""
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                return None, lines
            lines.append(line.rstrip(b"\r\n").decode())
            if line[3:4] != b"-":
                return int(line[:3]), lines

    def codes(self, n):
        return [self.reply()[0] for _ in range(n)]

    def close(self):
        self.file.close()
        self.sock.close()


class HelpersTest(unittest.TestCase):

    def test_free_port_is_bindable_for_tcp_and_udp(self):
        port = peers.free_port(udp_too=True)
        with socket.socket() as tcp, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind((peers.HOST, port))
            udp.bind((peers.HOST, port))

    def test_wait_port_times_out_on_a_closed_port(self):
        with self.assertRaises(TimeoutError):
            peers.wait_port(peers.free_port(), timeout=0.3)

    def test_missing_binary_skips_and_cleans_up(self):
        real = peers.SMTP_SINK
        peers.SMTP_SINK = "/nonexistent/smtp-sink"
        try:
            sink = peers.SmtpSink()
            with self.assertRaises(unittest.SkipTest):
                sink.__enter__()
            self.assertFalse(os.path.exists(sink.dir))
        finally:
            peers.SMTP_SINK = real

    def test_split_message(self):
        self.assertEqual(peers.split_message(b"A: 1\nB: 2\n\nbody\n\nx\n"),
                         (b"A: 1\nB: 2\n", b"body\n\nx\n"))
        self.assertEqual(peers.split_message(b"A: 1\r\n\r\nbody\r\n"),
                         (b"A: 1\r\n", b"body\r\n"))


class SmtpSinkTest(unittest.TestCase):

    def test_counts_messages_and_stops_cleanly(self):
        with peers.SmtpSink() as sink:
            self.assertEqual(sink.message_count(), 0)
            with smtplib.SMTP(peers.HOST, sink.port, timeout=10) as client:
                code, features = client.ehlo("client.test")
                self.assertEqual(code, 250)
                self.assertIn(b"PIPELINING", features)
                for i in range(5):
                    client.sendmail("a@sender.test", ["b@example.com"],
                                    b"Subject: %d\r\n\r\nhi\r\n" % i)
            sink.wait_for(5, timeout=10)
            self.assertEqual(sink.message_count(), 5)
            pgid = sink.proc.pid
        self.assertTrue(_group_gone(pgid))

    def test_soft_rejects_rcpt_and_can_drop_pipelining(self):
        with peers.SmtpSink(reject_soft=["RCPT"]) as sink:
            with smtplib.SMTP(peers.HOST, sink.port, timeout=10) as client:
                code, features = client.ehlo("client.test")
                self.assertNotIn(b"PIPELINING", features)
                client.mail("a@sender.test")
                code, _ = client.rcpt("b@example.com")
                self.assertEqual(code // 100, 4)

    def test_rejects_delays_smtp_sink_cannot_do(self):
        with self.assertRaises(ValueError):
            peers.SmtpSink(delays={"RCPT": 0.002})
        with self.assertRaises(ValueError):
            peers.SmtpSink(delays={"RCPT": 0})

    def test_hard_rejects_data_dot(self):
        with peers.SmtpSink(reject_hard=["."]) as sink:
            with smtplib.SMTP(peers.HOST, sink.port, timeout=10) as client:
                with self.assertRaises(smtplib.SMTPDataError) as caught:
                    client.sendmail("a@sender.test", ["b@example.com"], b"x")
                self.assertEqual(caught.exception.smtp_code // 100, 5)


class PostfixSmtpdTest(unittest.TestCase):

    BODY = (b"Line one\r\n.starts with a dot\r\n\r\nUTF-8 \xc3\xa9t\xc3\xa9\r\n"
            b"last\r\n")
    HEADER = (b"From: <a@sender.test>\r\nTo: <bob@example.com>\r\n"
              b"Subject: byte compare\r\nMessage-ID: <1@sender.test>\r\n")

    def test_stores_message_byte_for_byte(self):
        with peers.PostfixSmtpd(domains=["example.com"]) as mx:
            with smtplib.SMTP(peers.HOST, mx.port, timeout=10) as client:
                client.ehlo("client.test")
                refused = client.sendmail("a@sender.test",
                                          ["bob@example.com", "eve@example.com"],
                                          self.HEADER + b"\r\n" + self.BODY)
                self.assertEqual(refused, {})
            mx.wait_for(2, timeout=20)
            stored = mx.messages(rcpt="bob@example.com")
            self.assertEqual(len(stored), 1)
            header, body = peers.split_message(stored[0])
            # Maildir stores LF line endings; otherwise the body is untouched.
            self.assertEqual(body, self.BODY.replace(b"\r\n", b"\n"))
            self.assertIn(self.HEADER.replace(b"\r\n", b"\n"), header)
            self.assertIn(b"Delivered-To: bob@example.com\n", header)
            self.assertEqual(len(mx.messages(rcpt="eve@example.com")), 1)
            master = mx._master_pid
        self.assertTrue(_group_gone(master))

    def test_rejects_other_domains_and_bare_newlines(self):
        with peers.PostfixSmtpd(domains=["example.com"]) as mx:
            conn = SmtpConn(mx.port)
            try:
                self.assertEqual(conn.reply()[0], 220)
                conn.send(b"EHLO client.test\r\n")
                self.assertEqual(conn.reply()[0], 250)
                conn.send(b"MAIL FROM:<a@sender.test>\r\n")
                conn.send(b"RCPT TO:<x@elsewhere.test>\r\n")
                conn.send(b"RCPT TO:<bob@example.com>\r\n")
                conn.send(b"DATA\r\n")
                self.assertEqual(conn.codes(4), [250, 554, 250, 354])
                conn.send(b"Subject: bare\r\n\r\nbare newline\nhere\r\n.\r\n")
                code, lines = conn.reply()
                self.assertEqual(code // 100, 5, lines)
            finally:
                conn.close()
            time.sleep(0.5)
            self.assertEqual(mx.messages(), [])

    def test_strict_envelope_syntax(self):
        with peers.PostfixSmtpd(domains=["example.com"]) as mx:
            conn = SmtpConn(mx.port)
            try:
                conn.reply()
                conn.send(b"EHLO client.test\r\n")
                conn.reply()
                conn.send(b"MAIL FROM:a@sender.test\r\n")  # no <>
                self.assertEqual(conn.reply()[0], 501)
            finally:
                conn.close()

    def test_retries_when_its_port_is_taken(self):
        with socket.socket() as squatter:
            squatter.bind((peers.HOST, 0))
            squatter.listen(1)
            taken = squatter.getsockname()[1]
            real_free_port = peers.free_port
            ports = [taken]
            peers.free_port = lambda **kw: (
                ports.pop() if ports else real_free_port(**kw))
            try:
                with peers.PostfixSmtpd(domains=["example.com"]) as mx:
                    self.assertNotEqual(mx.port, taken)
                    conn = SmtpConn(mx.port)
                    self.assertEqual(conn.reply()[0], 220)
                    conn.close()
            finally:
                peers.free_port = real_free_port

    def test_starttls_when_enabled(self):
        with peers.PostfixSmtpd(domains=["example.com"], tls=True) as mx:
            context = ssl.create_default_context(cafile=mx.cert_file)
            context.check_hostname = False
            with smtplib.SMTP(peers.HOST, mx.port, timeout=10) as client:
                client.ehlo("client.test")
                self.assertTrue(client.has_extn("starttls"))
                client.starttls(context=context)
                client.ehlo("client.test")
                client.sendmail("a@sender.test", ["tls@example.com"],
                                b"Subject: tls\r\n\r\nsecret\r\n")
            mx.wait_for(1, timeout=20)
            header, body = peers.split_message(mx.messages()[0])
            self.assertEqual(body, b"secret\n")
            self.assertIn(b"with ESMTPS", header)


class DnsmasqTest(unittest.TestCase):

    def test_answers_mx_a_txt_and_nxdomain(self):
        with peers.Dnsmasq(
                mx={"example.com": [(10, "mx1.example.com"),
                                    (20, "mx2.example.com")]},
                a={"mx1.example.com": "127.0.0.1",
                   "mx2.example.com": ["127.0.0.2", "::1"]},
                txt={"_dmarc.example.com": "v=DMARC1; p=none"},
                ttl=120) as dns:
            self.assertEqual(dns.server, "127.0.0.1:%d" % dns.port)
            mx = dns.query("example.com", "MX")
            self.assertEqual(mx.rcode, "NOERROR")
            self.assertEqual(sorted(mx.values("MX")),
                             [(10, "mx1.example.com"), (20, "mx2.example.com")])
            self.assertEqual(mx.answers[0][2], 120)
            self.assertEqual(dns.query("mx1.example.com", "A").values(),
                             ["127.0.0.1"])
            self.assertEqual(dns.query("mx2.example.com", "A").values(),
                             ["127.0.0.2"])
            self.assertEqual(dns.query("mx2.example.com", "AAAA").values(),
                             ["::1"])
            self.assertEqual(dns.query("_dmarc.example.com", "TXT").values(),
                             ["v=DMARC1; p=none"])
            unknown = dns.query("nope.example.com", "MX")
            self.assertEqual((unknown.rcode, unknown.answers), ("NXDOMAIN", []))
            nodata = dns.query("example.com", "A")
            self.assertEqual((nodata.rcode, nodata.answers), ("NOERROR", []))
            pgid = dns.proc.pid
        self.assertTrue(_group_gone(pgid))


class FakeSmtpTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.fake = peers.FakeSmtp(slow_delay=0.5)
        cls.fake.__enter__()

    @classmethod
    def tearDownClass(cls):
        pgid = cls.fake.proc.pid
        cls.fake.__exit__(None, None, None)
        assert _group_gone(pgid), "fake_smtp left running"

    def connect(self):
        conn = SmtpConn(self.fake.port)
        self.addCleanup(conn.close)
        self.assertEqual(conn.reply()[0], 220)
        conn.send(b"EHLO client.test\r\n")
        code, lines = conn.reply()
        self.assertEqual(code, 250)
        return conn, lines

    def messages_to(self, rcpt):
        return [m for m in self.fake.messages() if rcpt in m["rcpts"]]

    def test_advertises_extensions(self):
        _, lines = self.connect()
        ext = {line[4:].split()[0] for line in lines[1:]}
        self.assertEqual(ext, {"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES",
                               "SIZE"})

    def test_accepts_and_logs_a_message(self):
        with smtplib.SMTP(peers.HOST, self.fake.port, timeout=10) as client:
            client.sendmail("a@sender.test", ["ok-1@example.com"],
                            b"Subject: hi\r\n\r\n.dot line\r\nend\r\n")
        self.fake.wait_for(1, timeout=10)
        [msg] = self.messages_to("ok-1@example.com")
        self.assertEqual(msg["mail_from"], "a@sender.test")
        self.assertEqual(msg["data"], b"Subject: hi\r\n\r\n.dot line\r\nend\r\n")
        self.assertEqual(msg["size"], len(msg["data"]))

    def test_pipelined_client_gets_replies_in_order(self):
        conn, _ = self.connect()
        conn.send(b"MAIL FROM:<p@sender.test>\r\n"
                  b"RCPT TO:<pipe@example.com>\r\n"
                  b"RCPT TO:<reject-rcpt@example.com>\r\n"
                  b"RCPT TO:<tempfail-rcpt@example.com>\r\n"
                  b"RCPT TO:<pipe2@example.com>\r\n"
                  b"DATA\r\n")
        self.assertEqual(conn.codes(6), [250, 250, 550, 451, 250, 354])
        conn.send(b"Subject: p\r\n\r\n..stuffed\r\n.\r\n"
                  b"RSET\r\nNOOP\r\nQUIT\r\n")
        self.assertEqual(conn.codes(4), [250, 250, 250, 221])
        self.assertEqual(conn.reply()[0], None)  # closed after QUIT
        [msg] = self.messages_to("pipe@example.com")
        self.assertEqual(msg["rcpts"], ["pipe@example.com", "pipe2@example.com"])
        self.assertEqual(msg["data"], b"Subject: p\r\n\r\n.stuffed\r\n")
        self.assertEqual(self.fake.events("improper_pipelining"), [])

    def test_rcpt_replies_by_local_part(self):
        conn, _ = self.connect()
        for rcpt, want in (("reject-rcpt", b"550 5.1.1"),
                           ("tempfail-rcpt", b"451 4.3.0"),
                           ("tempfail-rcpt+2", b"451 4.3.0"),
                           ("tempfail-once-a", b"451 4.3.0"),
                           ("tempfail-once-a", b"250 2.1.5"),
                           ("tempfail-once-b", b"451 4.3.0"),
                           ("plain", b"250 2.1.5")):
            conn.send(b"RSET\r\nMAIL FROM:<a@sender.test>\r\n")
            self.assertEqual(conn.codes(2), [250, 250])
            conn.send(b"RCPT TO:<%s@example.com>\r\n" % rcpt.encode())
            code, lines = conn.reply()
            self.assertTrue(lines[0].encode().startswith(want), (rcpt, lines))

    def test_slow_rcpt_is_delayed(self):
        conn, _ = self.connect()
        conn.send(b"MAIL FROM:<a@sender.test>\r\n")
        self.assertEqual(conn.reply()[0], 250)
        start = time.monotonic()
        conn.send(b"RCPT TO:<slow-rcpt@example.com>\r\n")
        self.assertEqual(conn.reply()[0], 250)
        self.assertGreaterEqual(time.monotonic() - start, 0.5)

    def test_data_replies_by_local_part(self):
        for rcpt, code in (("tempfail-data", 451), ("reject-data", 554)):
            conn, _ = self.connect()
            conn.send(b"MAIL FROM:<a@sender.test>\r\n"
                      b"RCPT TO:<%s@example.com>\r\nDATA\r\n" % rcpt.encode())
            self.assertEqual(conn.codes(3), [250, 250, 354])
            conn.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
            self.assertEqual(conn.reply()[0], code)

    def test_drop_in_data_closes_without_reply(self):
        conn, _ = self.connect()
        conn.send(b"MAIL FROM:<a@sender.test>\r\n"
                  b"RCPT TO:<drop-in-data@example.com>\r\nDATA\r\n")
        self.assertEqual(conn.codes(3), [250, 250, 354])
        try:
            conn.send(b"Subject: x\r\n\r\n" + b"body line\r\n" * 100)
            conn.send(b".\r\n")
        except OSError:
            pass  # the server may already have closed
        try:
            code, _ = conn.reply()
        except ConnectionResetError:
            code = None
        self.assertIsNone(code)
        self.assertEqual(self.messages_to("drop-in-data@example.com"), [])
        peers._poll(lambda: self.fake.events("drop"), 5, "drop event")

    def test_negative_control_451_is_not_logged_as_message(self):
        with smtplib.SMTP(peers.HOST, self.fake.port, timeout=10) as client:
            with self.assertRaises(smtplib.SMTPDataError) as caught:
                client.sendmail("a@sender.test",
                                ["tempfail-data+neg@example.com"], b"x\r\n")
            self.assertEqual(caught.exception.smtp_code, 451)
            client.sendmail("a@sender.test", ["after-neg@example.com"],
                            b"y\r\n")
        # The accepted message after it is logged, so the log is being read...
        peers._poll(lambda: self.messages_to("after-neg@example.com"), 5,
                    "the control message")
        # ...and the 451 was seen, but never became a "message" record.
        self.assertTrue([e for e in self.fake.events("reply")
                         if e["code"] == 451 and e["cmd"] == "."])
        self.assertEqual(
            self.messages_to("tempfail-data+neg@example.com"), [])

    def test_counts_bare_newlines(self):
        conn, _ = self.connect()
        conn.send(b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<bare@example.com>\r\n"
                  b"DATA\r\n")
        self.assertEqual(conn.codes(3), [250, 250, 354])
        conn.send(b"Subject: b\r\n\r\nbare\nnewline\r\n.\r\n")
        self.assertEqual(conn.reply()[0], 250)
        [msg] = self.messages_to("bare@example.com")
        self.assertEqual(msg["bare_lf"], 1)
        self.assertEqual(msg["data"], b"Subject: b\r\n\r\nbare\nnewline\r\n")

    def test_protocol_errors(self):
        conn = SmtpConn(self.fake.port)
        self.addCleanup(conn.close)
        conn.reply()
        conn.send(b"MAIL FROM:<a@sender.test>\r\n")  # before EHLO
        self.assertEqual(conn.reply()[0], 503)
        conn.send(b"EHLO c\r\nRCPT TO:<x@example.com>\r\nDATA\r\nBOGUS\r\n")
        self.assertEqual(conn.codes(4), [250, 503, 503, 502])


class FakeSmtpModesTest(unittest.TestCase):

    def test_no_pipelining_detects_improper_pipelining(self):
        with peers.FakeSmtp(pipelining=False) as fake:
            conn = SmtpConn(fake.port)
            try:
                conn.reply()
                conn.send(b"EHLO client.test\r\n")
                code, lines = conn.reply()
                self.assertNotIn("250-PIPELINING", lines)
                conn.send(b"MAIL FROM:<a@sender.test>\r\n"
                          b"RCPT TO:<b@example.com>\r\n")
                self.assertEqual(conn.codes(2), [250, 250])
            finally:
                conn.close()
            peers._poll(lambda: fake.events("improper_pipelining"), 5,
                        "improper_pipelining event")

    def test_reply_delays_and_no_data(self):
        with peers.FakeSmtp(delays={"RCPT": 0.3}, record_data=False) as fake:
            with smtplib.SMTP(peers.HOST, fake.port, timeout=10) as client:
                client.ehlo("client.test")
                client.mail("a@sender.test")
                start = time.monotonic()
                self.assertEqual(client.rcpt("b@example.com")[0], 250)
                self.assertGreaterEqual(time.monotonic() - start, 0.3)
                client.data(b"Subject: s\r\n\r\nbody\r\n")
            fake.wait_for(1, timeout=10)
            [msg] = fake.messages()
            self.assertEqual(msg["size"], len(b"Subject: s\r\n\r\nbody\r\n"))
            self.assertNotIn("data", msg)

    def test_banner_delay_and_early_talker(self):
        with peers.FakeSmtp(banner_delay=0.3) as fake:
            conn = SmtpConn(fake.port)
            try:
                conn.send(b"EHLO too.early\r\n")
                self.assertEqual(conn.reply()[0], 220)
            finally:
                conn.close()
            peers._poll(lambda: fake.events("early_talker"), 5,
                        "early_talker event")


def tearDownModule():
    assert not procs._live_groups, "peers left running: %s" % procs._live_groups


if __name__ == "__main__":
    unittest.main()
