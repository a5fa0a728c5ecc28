"""Runs bench/e2e_bench.py at a small size and checks its one summary line."""
import re
import subprocess
import sys
import unittest


class E2eBenchSmokeTest(unittest.TestCase):
    def test_prints_one_summary_line(self):
        r = subprocess.run(
            [sys.executable, "bench/e2e_bench.py", "--recipients", "300",
             "--domains", "3", "--timeout", "60"],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.fullmatch(r"salvo_e2e delivered=(\d+) seconds=[\d.]+ "
                         r"msgs_per_s=\d+\n", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        self.assertEqual(int(m.group(1)), 300)


if __name__ == "__main__":
    unittest.main()
