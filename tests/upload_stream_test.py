"""Streamed recipient uploads through the salvo binary with Python's
http.client: chunked NDJSON and CSV bodies of any length are accepted in
durable chunks; a bad line answers 400 naming the committed count and the
line to resume from, and nothing of its chunk is queued."""
import http.client
import json
import os
import shutil
import tempfile
import time
import unittest

from tests.lib.salvo import API_KEY, Salvo

CHUNK = 10000  # Api::kDefaultUploadChunkRecipients


def ndjson(start, stop):
    return "".join(f'{{"email":"u{i}@d{i % 5}.example.com",'
                   f'"data":{{"name":"N{i}"}}}}\n'
                   for i in range(start, stop)).encode()


class UploadStreamTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="salvo-upload-")
        self.salvo = Salvo(os.path.join(self.work, "spool"),
                           {"limits.max_request_bytes": 1 << 16}).start()
        send_at = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                time.gmtime(time.time() + 86400))
        self.cid = self.salvo.submit_campaign({
            "from": "news@shop.example.com", "subject": "Hi {{name}}",
            "text": "Hello {{name}}", "stream": True, "send_at": send_at})

    def tearDown(self):
        self.assertEqual(self.salvo.stop(), 0)
        shutil.rmtree(self.work, ignore_errors=True)

    def upload(self, body, ctype="application/x-ndjson", piece=50000):
        conn = http.client.HTTPConnection("127.0.0.1", self.salvo.port,
                                          timeout=60)
        try:
            conn.request("POST", f"/v1/campaigns/{self.cid}/recipients",
                         body=(body[i:i + piece]
                               for i in range(0, len(body), piece)),
                         headers={"Authorization": f"Bearer {API_KEY}",
                                  "Content-Type": ctype},
                         encode_chunked=True)
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        finally:
            conn.close()

    def test_chunked_bodies_far_over_max_request_bytes(self):
        body = ndjson(0, 25000)
        self.assertGreater(len(body), 20 * (1 << 16))
        status, out = self.upload(body)
        self.assertEqual(status, 200, out)
        self.assertEqual(out["accepted"], 25000)
        self.assertEqual(out["chunks"], 3)
        csv = ("email,name\n" + "".join(
            f"c{i}@d{i % 5}.example.com,\"N, {i}\"\n"
            for i in range(12000))).encode()
        status, out = self.upload(csv, "text/csv", piece=777)
        self.assertEqual(status, 200, out)
        self.assertEqual(out["accepted"], 12000)
        self.assertEqual(self.salvo.counts(self.cid)["accepted"], 37000)
        # Other routes keep max_request_bytes.
        status, _ = self.salvo.request("POST", "/v1/campaigns",
                                       raw=b"{" + b" " * (1 << 16) + b"}")
        self.assertEqual(status, 413)

    def test_bad_line_keeps_earlier_chunks_and_says_where_to_resume(self):
        body = (ndjson(0, 25000) + b'{"email":"nope","data":{"name":"x"}}\n' +
                ndjson(25001, 40000))
        status, out = self.upload(body)
        self.assertEqual(status, 400, out)
        self.assertEqual(out["error"]["field"], "line 25001")
        self.assertIn("20000 recipients in 2 chunks were committed; "
                      "resume from line 20001", out["error"]["message"])
        self.assertEqual(self.salvo.counts(self.cid)["accepted"], 20000)
        status, out = self.upload(ndjson(20000, 40000))
        self.assertEqual(status, 200, out)
        self.assertEqual(self.salvo.counts(self.cid)["accepted"], 40000)


if __name__ == "__main__":
    unittest.main()
