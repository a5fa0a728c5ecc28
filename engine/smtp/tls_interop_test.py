"""STARTTLS against a real Postfix smtpd on 127.0.0.1 (self-signed cert made
by the openssl CLI, CN=mx.test): opportunistic delivers over TLS; required
verify against the system CA store fails the handshake and delivers nothing.
Drives engine/smtp:smtp_send_one (one Session, one message)."""
import subprocess
import unittest

from tests.lib import peers

TOOL = peers.runfile("engine/smtp/smtp_send_one")


def send(port, policy, ca="-", rcpts=("a@example.com",)):
    out = subprocess.run([TOOL, str(port), "mx.test", policy, ca,
                          "sender@client.test"] + list(rcpts),
                         capture_output=True, timeout=60, check=True)
    line = out.stdout.decode().strip()
    fields = {}
    for part in line.split(" "):
        if "=" in part:
            k, v = part.split("=", 1)
            fields.setdefault(k, v)
    return line, fields


class TlsInteropTest(unittest.TestCase):
    def test_opportunistic_then_required_verify(self):
        with peers.PostfixSmtpd(tls=True, hostname="mx.test") as mx:
            line, f = send(mx.port, "opportunistic",
                           rcpts=("a@example.com", "b@example.com"))
            self.assertEqual(f["rcpt0"], "250", line)
            self.assertEqual(f["rcpt1"], "250", line)
            self.assertTrue(f["tls"].startswith("TLSv1."), line)
            self.assertNotEqual(f["cipher"], "none", line)
            self.assertEqual(f["verified"], "0", line)
            self.assertEqual(f["closed"], "221", line)
            self.assertEqual(f["run_rc"], "0", line)
            peers._poll(lambda: len(mx.messages()) == 2, 20, "2 messages")
            self.assertIn(b"\n.a stuffed dot line\n", mx.messages()[0])
            self.assertIn("TLS connection established", mx.maillog())

            line, f = send(mx.port, "required_verify")
            self.assertNotIn("rcpt0", f, line)  # never got to a transaction
            self.assertEqual(f["closed_stage"], "tls_handshake", line)
            self.assertEqual(f["tls"], "none", line)
            self.assertEqual(f["run_rc"], "0", line)

            line, f = send(mx.port, "disabled")
            self.assertEqual(f["rcpt0"], "250", line)
            self.assertEqual(f["tls"], "none", line)
            peers._poll(lambda: len(mx.messages()) == 3, 20, "3 messages")


if __name__ == "__main__":
    unittest.main()
