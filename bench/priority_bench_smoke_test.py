"""Runs bench/priority_bench.py at a small size and checks its summary line
(every transactional message arrived; no speed goal)."""
import re
import subprocess
import sys
import unittest


class PriorityBenchSmokeTest(unittest.TestCase):
    def test_prints_one_summary_line(self):
        r = subprocess.run(
            [sys.executable, "bench/priority_bench.py", "--bulk", "3000",
             "--warmup", "100", "--tx", "20", "--rate", "50",
             "--body-bytes", "500", "--timeout", "90"],
            capture_output=True, text=True, timeout=150)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.fullmatch(r"salvo_priority tx=20 arrived=(\d+) missing=0 "
                         r"p50_ms=\S+ p90_ms=\S+ p99_ms=\S+ max_ms=\S+ "
                         r"bulk_msgs_per_s=\d+ window_s=\S+ sink_cpu=\d+%.*\n",
                         r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        self.assertEqual(int(m.group(1)), 20)


if __name__ == "__main__":
    unittest.main()
