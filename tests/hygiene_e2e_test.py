"""Bulk-sender hygiene end to end through the salvo binary: campaign mail
carries List-Unsubscribe (mailto + https) and List-Unsubscribe-Post, both
covered by the DKIM signature; the return path is VERP; the one-click URL
suppresses the address for the tenant, so a later campaign skips it at
accept; an address suppressed while it waits for a retry is never sent."""
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.parse

from tests.lib import peers
from tests.lib.salvo import Salvo

SENDER = "shop.salvo.test"


class HygieneTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="salvo-hygiene-")

    def tearDown(self):
        shutil.rmtree(self.work, ignore_errors=True)

    def test_list_unsubscribe_one_click_verp_and_suppression(self):
        key = os.path.join(self.work, "ed.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out",
                        key], check=True, capture_output=True)
        with peers.FakeSmtp() as fake:
            over = {
                "routes": f'[{{domain="*", host="127.0.0.1", port={fake.port}}}]',
                "hygiene.unsubscribe_secret": "test-secret-123",
                "hygiene.unsubscribe_base_url": "https://mail.salvo.test",
                "hygiene.unsubscribe_mailto_domain": "unsub.salvo.test",
                "hygiene.bounce_domain": "bounces.salvo.test",
                "dkim": f'[{{domain="{SENDER}", selector="ed", '
                        f'algorithm="ed25519-sha256", key_file="{key}"}}]',
                "retry.initial": "2s", "retry.max": "2s", "retry.jitter": 0,
            }
            with Salvo(os.path.join(self.work, "spool"), over,
                       log_path=os.path.join(self.work, "salvo.log")) as s:
                rcpt = "ann@dest.salvo.test"
                cid = s.submit_campaign({
                    "from": f"Shop <news@{SENDER}>", "subject": "Hi",
                    "text": "Hello\n", "recipients": [{"email": rcpt}]})
                s.wait_settled(cid, timeout=30)
                fake.wait_for(1)
                m = fake.messages()[0]
                data = m["data"]
                head = data.split(b"\r\n\r\n", 1)[0].decode()
                unfolded = re.sub(r"\r\n[ \t]+", " ", head)
                lu = re.search(r"^List-Unsubscribe: (.*)$", unfolded, re.M)
                self.assertIsNotNone(lu, head)
                mailto = re.search(r"<mailto:([^@?>]+)@([^?>]+)\?subject=([^>]+)>",
                                   lu.group(1))
                self.assertIsNotNone(mailto, lu.group(1))
                self.assertEqual(mailto.group(1), "unsubscribe")
                self.assertEqual(mailto.group(2), "unsub.salvo.test")
                self.assertTrue(mailto.group(3).startswith("unsubscribe-"))
                url = re.search(r"<(https://mail\.salvo\.test/[^>]+)>",
                                lu.group(1)).group(1)
                self.assertIn("List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                              unfolded)
                sig = re.search(r"^DKIM-Signature: (.*)$", unfolded, re.M)
                self.assertIsNotNone(sig, head)
                h = re.search(r"h=([^;]+);", sig.group(1)).group(1)
                h = [x.strip().lower() for x in h.replace(" ", "").split(":")]
                self.assertIn("list-unsubscribe", h)
                self.assertIn("list-unsubscribe-post", h)
                # VERP return path names the campaign.
                self.assertRegex(m["mail_from"],
                                 r"^bounces\+%s\.[0-9a-f]{16}@bounces\.salvo\.test$"
                                 % cid)

                # One click (RFC 8058): POST to the https URL's path.
                path = urllib.parse.urlparse(url).path
                status, _ = s.request("GET", path, key=None)
                self.assertEqual(status, 200)  # a confirmation page only
                status, body = s.request(
                    "POST", path, key=None,
                    raw=b"List-Unsubscribe=One-Click",
                    headers={"Content-Type":
                             "application/x-www-form-urlencoded"})
                self.assertEqual(status, 200, body)
                status, body = s.request("POST", path[:-3] + "AAA", key=None,
                                         raw=b"List-Unsubscribe=One-Click")
                self.assertIn(status, (400, 404), "a tampered token must fail")

                # The next campaign skips the address at accept.
                status, body = s.request("POST", "/v1/campaigns", {
                    "from": f"news@{SENDER}", "subject": "Again",
                    "text": "x\n", "recipients": [{"email": rcpt},
                                                  {"email": "bob@dest.salvo.test"}]})
                self.assertEqual(status, 201, body)
                self.assertEqual(body["accepted"], 1)
                self.assertEqual([x["email"] for x in body["suppressed"]], [rcpt])

                # Suppressed while waiting for a retry: never sent.
                late = "tempfail-once-late@dest.salvo.test"
                cid3 = s.submit_campaign({
                    "from": f"news@{SENDER}", "subject": "Late", "text": "x\n",
                    "recipients": [{"email": late}]})
                deadline = time.monotonic() + 20
                while s.counts(cid3)["deferred"] < 1:
                    self.assertLess(time.monotonic(), deadline)
                    time.sleep(0.05)
                status, body = s.request("POST", "/v1/suppressions",
                                         {"entries": [late]})
                self.assertEqual(status, 201, body)
                deadline = time.monotonic() + 30
                while True:
                    c = s.counts(cid3)
                    if c["bounced"] + c["delivered"] >= 1:
                        break
                    self.assertLess(time.monotonic(), deadline, c)
                    time.sleep(0.1)
                self.assertEqual(c["bounced"], 1, c)
                self.assertEqual(c["delivered"], 0, c)
                self.assertNotIn(late, [r for msg in fake.messages()
                                        for r in msg["rcpts"]])

    def test_verp_gives_each_recipient_its_own_transaction(self):
        # Identical transactional content to one domain shares a transaction
        # without VERP; with VERP each recipient gets its own MAIL FROM, so
        # an asynchronous bounce names the right one.
        rcpts = [f"r{i}@dest.salvo.test" for i in range(3)]
        for verp in (False, True):
            with peers.FakeSmtp() as fake:
                over = {"routes": f'[{{domain="*", host="127.0.0.1", '
                                  f'port={fake.port}}}]'}
                if verp:
                    over["hygiene.bounce_domain"] = "bounces.salvo.test"
                spool = os.path.join(self.work, f"spool-{verp}")
                with Salvo(spool, over) as s:
                    status, body = s.request("POST", "/v1/messages", {
                        "from": f"app@{SENDER}", "to": rcpts,
                        "subject": "Receipt", "text": "Thanks\n"})
                    self.assertEqual(status, 201, body)
                    s.wait_settled(body["id"], timeout=30)
                    fake.wait_for(1)
                    msgs = fake.messages()
                    got = sorted(r for m in msgs for r in m["rcpts"])
                    self.assertEqual(got, rcpts)
                    if not verp:
                        self.assertEqual(len(msgs), 1, msgs)
                        continue
                    self.assertEqual(len(msgs), 3, msgs)
                    ids = {r["email"]: r["id"] for r in body["recipients"]}
                    for m in msgs:
                        self.assertEqual(len(m["rcpts"]), 1)
                        self.assertEqual(
                            m["mail_from"],
                            "bounces+%s.%s@bounces.salvo.test"
                            % (body["id"], ids[m["rcpts"][0]]))


if __name__ == "__main__":
    unittest.main()
