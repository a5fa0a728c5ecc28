"""Runs bench/ingest_bench.py at a small size (NDJSON and CSV) and checks its
one summary line."""
import re
import subprocess
import sys
import unittest


class IngestBenchSmokeTest(unittest.TestCase):
    def test_prints_one_summary_line(self):
        for fmt in ("ndjson", "csv"):
            r = subprocess.run(
                [sys.executable, "bench/ingest_bench.py", "--recipients",
                 "30000", "--uploads", "2", "--format", fmt, "--timeout",
                 "60"], capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            m = re.fullmatch(r"salvo_ingest format=(\w+) uploads=2 "
                             r"recipients=(\d+) seconds=[\d.]+ "
                             r"rcpts_per_s=\d+ load1=[\d.]+\n", r.stdout)
            self.assertIsNotNone(m, r.stdout)
            self.assertEqual(m.group(1), fmt)
            self.assertEqual(int(m.group(2)), 30000)


if __name__ == "__main__":
    unittest.main()
