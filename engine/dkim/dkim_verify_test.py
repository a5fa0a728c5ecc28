"""DKIM signatures from engine/dkim, verified by python3-dkim.

Keys are generated per run with the openssl CLI (RSA-2048, RSA-1024,
Ed25519); the public keys are derived by openssl too, independently of the
signer's own dns_record(). dkim_sign_tool signs wire-form (dot-stuffed)
messages, or one the real renderer writes (--render); the test undoes the
dot-stuffing as an MTA would and calls dkim.verify with a dnsfunc that
answers from a dict, or, in DnsmasqTxtTest, with a UDP query to dnsmasq
serving the key as a TXT record split in <= 255-byte strings.
Run: bazel test //engine/dkim:dkim_verify_test
"""

import base64
import os
import random
import shutil
import socket
import struct
import subprocess
import tempfile
import unittest

import dkim

from tests.lib import peers

TOOL = "engine/dkim/dkim_sign_tool"
T = 1700000000
DOMAIN = "shop.example"


def openssl(*args):
    return subprocess.run(["openssl", *args], check=True,
                          capture_output=True).stdout


def stuff(message):
    """SMTP dot-stuffing of a CRLF message (what the renderer emits)."""
    lines = message.split(b"\r\n")
    return b"\r\n".join(b"." + l if l.startswith(b".") else l for l in lines)


def verify(d, idx, dnsfunc):
    """d.verify(), with a failed check (raised by python3-dkim for a body
    hash mismatch) as False, as dkim.verify() reports it."""
    try:
        return d.verify(idx=idx, dnsfunc=dnsfunc)
    except dkim.ValidationError:
        return False


def unstuff(wire):
    lines = wire.split(b"\r\n")
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)


class Keys:
    """Test-only keys in a temp dir, made at test time."""

    def __init__(self, root):
        self.rsa = os.path.join(root, "rsa2048.pem")
        self.rsa1024 = os.path.join(root, "rsa1024.pem")
        self.ed = os.path.join(root, "ed25519.pem")
        openssl("genrsa", "-out", self.rsa, "2048")
        openssl("genrsa", "-out", self.rsa1024, "1024")
        openssl("genpkey", "-algorithm", "ed25519", "-out", self.ed)

    @staticmethod
    def record(path):
        der = openssl("pkey", "-in", path, "-pubout", "-outform", "DER")
        if len(der) == 44:
            # SubjectPublicKeyInfo of Ed25519: 12-byte prefix + raw key.
            return "v=DKIM1; k=ed25519; p=" + base64.b64encode(
                der[-32:]).decode()
        return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


MESSAGES = {
    "plain": (
        b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        b"Message-ID: <1.2@mta.shop.example>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"From: Shop <news@shop.example>\r\n"
        b"To: someone@example.org\r\n"
        b"Subject: Weekly   offers\t\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"Hello,   world  \r\n"
        b".a line that starts with a dot\r\n"
        b"..and two dots\r\n"
        b".\r\n"
        b"\r\n\r\n"),
    "folded_duplicates_empty_trailer": (
        b"From: news@shop.example\r\n"
        b"Subject: first\r\n"
        b"To: a@example.org,\r\n"
        b"\tb@example.org,\r\n"
        b"   c@example.org\r\n"
        b"List-Unsubscribe: <https://shop.example/u/1>,\r\n"
        b" <mailto:u@shop.example>\r\n"
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        b"Subject: second (the signed one)\r\n"
        b"\r\n"
        b"x\r\n \t \r\n\r\n"),
    "no_body": b"From: news@shop.example\r\nSubject: empty\r\n\r\n",
    "long_lines_multipart": (
        b"From: news@shop.example\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/alternative; boundary=\"b1\"\r\n"
        b"\r\n--b1\r\nContent-Type: text/plain\r\n\r\n"
        + b"word " * 180 + b"\r\n"
        b"--b1\r\nContent-Type: text/html\r\n\r\n<p>"
        + b"\t".join([b"x"] * 300) + b"</p>\r\n--b1--\r\n"),
}


class DkimVerifyTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tool = peers.runfile(TOOL)
        cls.dir = tempfile.mkdtemp(prefix="salvo-dkim-")
        cls.keys = Keys(cls.dir)
        cls.records = {
            b"rsa._domainkey.shop.example.": Keys.record(cls.keys.rsa),
            b"rsa1024._domainkey.shop.example.":
                Keys.record(cls.keys.rsa1024),
            b"ed._domainkey.shop.example.": Keys.record(cls.keys.ed),
        }

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def signers(self):
        return [f"{DOMAIN}:rsa:rsa-sha256:{self.keys.rsa}",
                f"{DOMAIN}:ed:ed25519-sha256:{self.keys.ed}",
                f"{DOMAIN}:rsa1024:rsa:{self.keys.rsa1024}"]

    def sign(self, wire, signers=None, extra=()):
        path = os.path.join(self.dir, "msg.eml")
        with open(path, "wb") as f:
            f.write(wire)
        out = subprocess.run([self.tool, *extra, path, str(T),
                              *(signers or self.signers())],
                             capture_output=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout

    def dnsfunc(self, name, timeout=5):
        self.queried.append(name)
        value = self.records.get(name)
        return value.encode() if value else None

    def verify_all(self, message, n):
        """Verifies each of the n signatures of an unstuffed message."""
        self.queried = []
        d = dkim.DKIM(message)
        results = [verify(d, i, self.dnsfunc) for i in range(n)]
        return results

    def test_signer_publishes_the_same_keys_openssl_derives(self):
        out = self.sign(b"", extra=["--record"]).decode().splitlines()
        self.assertEqual(out, [
            self.records[b"rsa._domainkey.shop.example."],
            self.records[b"ed._domainkey.shop.example."],
            self.records[b"rsa1024._domainkey.shop.example."]])

    def test_all_messages_verify_with_every_algorithm(self):
        for name, message in MESSAGES.items():
            with self.subTest(message=name):
                wire = stuff(message)
                signed = self.sign(wire)
                self.assertTrue(signed.endswith(wire))
                self.assertEqual(signed.count(b"DKIM-Signature:"), 3)
                for line in signed[:len(signed) - len(wire)].split(b"\r\n"):
                    self.assertLessEqual(len(line), 78, line)
                results = self.verify_all(unstuff(signed), 3)
                self.assertEqual(results, [True, True, True])
                self.assertEqual(len(set(self.queried)), 3)

    def test_rendered_message_verifies(self):
        signed = self.sign(b"", extra=["--render"])
        self.assertIn(b"\r\n..", signed)  # the renderer dot-stuffed a line
        self.assertEqual(self.verify_all(unstuff(signed), 3),
                         [True, True, True])

    def test_tampering_fails_verification(self):
        message = MESSAGES["plain"]
        good = unstuff(self.sign(stuff(message)))
        self.assertEqual(self.verify_all(good, 3), [True] * 3)
        # Negative controls: a changed body byte, a changed signed header.
        body = good.replace(b"Hello,", b"Hellp,")
        self.assertEqual(self.verify_all(body, 3), [False] * 3)
        subject = good.replace(b"Weekly", b"Daily")
        self.assertEqual(self.verify_all(subject, 3), [False] * 3)
        # Trailing empty lines and whitespace changes are relaxed away; an
        # unsigned header may be added.
        relaxed = good.replace(b"Hello,   world", b"Hello, world") + \
            b"\r\n\r\n"
        relaxed = relaxed.replace(b"\r\nTo:", b"\r\nX-Added: 1\r\nTo:")
        self.assertEqual(self.verify_all(relaxed, 3), [True] * 3)

    def test_wrong_key_fails(self):
        self.records, saved = dict(self.records), self.records
        try:
            self.records[b"rsa._domainkey.shop.example."] = \
                self.records[b"rsa1024._domainkey.shop.example."]
            signed = unstuff(self.sign(stuff(MESSAGES["plain"])))
            self.assertEqual(self.verify_all(signed, 3), [False, True, True])
        finally:
            self.records = saved

    def test_other_from_domain_is_not_signed(self):
        message = MESSAGES["plain"].replace(b"news@shop.example",
                                            b"news@other.example")
        self.assertEqual(self.sign(stuff(message)), stuff(message))


def txt_query(port, name, timeout=2.0):
    """One UDP TXT query to 127.0.0.1:port; returns the answer's character
    strings (a list of bytes, each <= 255 by the wire format)."""
    qid = random.Random(name).randrange(1 << 16)
    qname = b"".join(bytes([len(l)]) + l.encode()
                     for l in name.rstrip(".").split(".")) + b"\0"
    query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + \
        struct.pack(">HH", 16, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query, ("127.0.0.1", port))
        while True:
            reply = sock.recv(4096)
            if struct.unpack(">H", reply[:2])[0] == qid:
                break
    flags, qd, an = struct.unpack(">HHH", reply[2:8])
    if flags & 0x0200 or an == 0:
        return []  # truncated or no answer
    offset = 12 + len(qname) + 4  # our question, echoed back
    strings = []
    for _ in range(an):
        # The answer name: a compression pointer or labels.
        if reply[offset] & 0xC0 == 0xC0:
            offset += 2
        else:
            while reply[offset]:
                offset += 1 + reply[offset]
            offset += 1
        rtype, _, _, rdlen = struct.unpack(">HHIH",
                                           reply[offset:offset + 10])
        offset += 10
        rdata = reply[offset:offset + rdlen]
        offset += rdlen
        if rtype != 16:
            continue
        i = 0
        while i < len(rdata):
            strings.append(rdata[i + 1:i + 1 + rdata[i]])
            i += 1 + rdata[i]
    return strings


class DnsmasqTxtTest(unittest.TestCase):
    """The public keys as real TXT records from dnsmasq, queried over UDP."""

    def test_verifies_against_dnsmasq(self):
        root = tempfile.mkdtemp(prefix="salvo-dkim-")
        try:
            keys = Keys(root)
            records = {"rsa._domainkey." + DOMAIN: Keys.record(keys.rsa),
                       "ed._domainkey." + DOMAIN: Keys.record(keys.ed)}
            # --txt-record splits its value at commas into strings; a DKIM
            # record has no commas, so cut it into <= 255-byte strings here.
            txt = {name: ",".join(v[i:i + 255] for i in range(0, len(v), 255))
                   for name, v in records.items()}
            with peers.Dnsmasq(txt=txt, local=[DOMAIN]) as dns:
                strings = txt_query(dns.port, "rsa._domainkey." + DOMAIN)
                self.assertGreater(len(strings), 1)  # 2048-bit: 2 strings
                self.assertTrue(all(len(s) <= 255 for s in strings))
                self.assertEqual(b"".join(strings).decode(),
                                 records["rsa._domainkey." + DOMAIN])
                queried = []

                def dnsfunc(name, timeout=5):
                    queried.append(name)
                    found = txt_query(dns.port, name.decode())
                    return b"".join(found) if found else None

                path = os.path.join(root, "msg.eml")
                with open(path, "wb") as f:
                    f.write(stuff(MESSAGES["plain"]))
                signed = subprocess.run(
                    [peers.runfile(TOOL), path, str(T),
                     f"{DOMAIN}:rsa:rsa:{keys.rsa}",
                     f"{DOMAIN}:ed:ed25519:{keys.ed}"],
                    check=True, capture_output=True).stdout
                message = unstuff(signed)
                d = dkim.DKIM(message)
                self.assertTrue(verify(d, 0, dnsfunc))
                self.assertTrue(verify(d, 1, dnsfunc))
                self.assertEqual(sorted(queried), [
                    b"ed._domainkey.shop.example.",
                    b"rsa._domainkey.shop.example."])
                tampered = dkim.DKIM(message.replace(b"Hello", b"Jello"))
                self.assertFalse(verify(tampered, 0, dnsfunc))
                self.assertFalse(verify(tampered, 1, dnsfunc))
                # dnsmasq really answered the queries.
                self.assertIn("rsa._domainkey." + DOMAIN, dns.log())
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
