"""DKIM end to end: salvo configured with an Ed25519 and an RSA key for the
sending domain delivers to FakeSmtp; python3-dkim verifies both signatures
on the bytes as received, with the public keys served as TXT records by
dnsmasq. A negative control tampers with a received body."""
import base64
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import unittest

import dkim

from tests.lib import peers
from tests.lib.salvo import Salvo

SENDER = "shop.salvo.test"


def openssl(*args):
    return subprocess.run(["openssl", *args], check=True,
                          capture_output=True).stdout


def public_key_b64(key_file, raw_ed25519=False):
    der = openssl("pkey", "-in", key_file, "-pubout", "-outform", "DER")
    # RFC 8463: an Ed25519 p= is the bare 32-byte key, not the SPKI.
    return base64.b64encode(der[-32:] if raw_ed25519 else der).decode()


def txt_query(port, name):
    """The TXT strings of `name`, joined, from dnsmasq on 127.0.0.1:port."""
    r = peers.dns_query(port, name, "TXT")
    return [v for (_, t, _, v) in r.answers if t == "TXT"]


class DkimEndToEndTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="salvo-dkim-")

    def tearDown(self):
        shutil.rmtree(self.work, ignore_errors=True)

    def test_signatures_verify_with_python_dkim(self):
        ed = os.path.join(self.work, "ed.pem")
        rsa = os.path.join(self.work, "rsa.pem")
        openssl("genpkey", "-algorithm", "ed25519", "-out", ed)
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
                "rsa_keygen_bits:2048", "-out", rsa)
        ed_txt = f"v=DKIM1; k=ed25519; p={public_key_b64(ed, True)}"
        rsa_p = public_key_b64(rsa)
        # Split the long RSA record into <= 255-byte strings (commas split
        # --txt-record values into strings).
        rsa_txt = "v=DKIM1; k=rsa; p=" + rsa_p
        chunks = ",".join(rsa_txt[i:i + 250] for i in range(0, len(rsa_txt), 250))
        txt = {f"ed._domainkey.{SENDER}": ed_txt,
               f"rsa._domainkey.{SENDER}": chunks}
        dkim_conf = (
            f'[{{domain="{SENDER}", selector="ed", algorithm="ed25519-sha256", '
            f'key_file="{ed}"}}, {{domain="{SENDER}", selector="rsa", '
            f'algorithm="rsa-sha256", key_file="{rsa}"}}]')
        with peers.Dnsmasq(txt=txt, local=["salvo.test"]) as dns, \
                peers.FakeSmtp() as fake:
            route = f'[{{domain="*", host="127.0.0.1", port={fake.port}}}]'
            with Salvo(os.path.join(self.work, "spool"),
                       {"routes": route, "dkim": dkim_conf},
                       log_path=os.path.join(self.work, "salvo.log")) as s:
                cid = s.submit_campaign({
                    "from": f"Shop <news@{SENDER}>",
                    "subject": "Hi {{n}} \u00e9",
                    "text": "Hello {{n}}\n.dot line\n",
                    "html": "<p>Hello {{n}}</p>",
                    "recipients": [{"email": f"r{i}@dest.salvo.test",
                                    "data": {"n": str(i)}} for i in range(3)]})
                c = s.wait_settled(cid, timeout=60)
                self.assertEqual(c["delivered"], 3, c)
            fake.wait_for(3)

            def dnsfunc(name, timeout=5):
                name = name.decode() if isinstance(name, bytes) else name
                strings = txt_query(dns.port, name.rstrip("."))
                return "".join(strings).encode()

            for m in fake.messages():
                data = m["data"]
                self.assertEqual(data.count(b"DKIM-Signature:"), 2)
                sigs = dkim.DKIM(data)
                for idx in range(2):
                    self.assertTrue(sigs.verify(idx=idx, dnsfunc=dnsfunc),
                                    f"signature {idx} failed")
                tampered = data.replace(b"Hello", b"Jello", 1)
                self.assertNotEqual(tampered, data)
                try:
                    ok = dkim.DKIM(tampered).verify(idx=0, dnsfunc=dnsfunc)
                except dkim.ValidationError:
                    ok = False
                self.assertFalse(ok, "a tampered body must not verify")


if __name__ == "__main__":
    unittest.main()
