#!/usr/bin/env python3
"""Compactions and flushes per column family from RocksDB info LOGs.

Reads the LOG files given (e.g. a spool kept by scale_bench.py --keep:
spool/LOG.old is the run before the kill -9, spool/LOG the restart). Salvo's
logger cuts lines at 1 KiB, so fields are read by regex, not as JSON.
Prints one line per compaction (seconds since the first event, family,
input MB, wall and CPU seconds), then per family: compactions, input MB,
wall and CPU seconds, flushes. Usage: compaction_log.py [-q] LOG...
"""
import collections
import re
import sys


def field(line, name):
    m = re.search(r'"%s": (\d+)' % name, line)
    return int(m.group(1)) if m else 0


def summarize(path, quiet):
    t0 = None
    job_cf, starts = {}, {}
    total = collections.defaultdict(collections.Counter)
    with open(path, errors="replace") as f:
        for line in f:
            m = re.search(r"\[(\w+)\] \[JOB (\d+)\]", line)
            if m:
                job_cf[int(m.group(2))] = m.group(1)
            if "EVENT_LOG_v1" not in line:
                continue
            t = field(line, "time_micros") / 1e6
            t0 = t if t0 is None else t0
            job = field(line, "job")
            m = re.search(r'"cf_name": "(\w+)"', line)
            cf = m.group(1) if m else job_cf.get(job, "?")
            if '"compaction_started"' in line:
                starts[job] = (t - t0, field(line, "input_data_size") / 1e6, cf)
            elif '"compaction_finished"' in line:
                at, in_mb, cf = starts.get(job, (t - t0, 0.0, cf))
                wall = field(line, "compaction_time_micros") / 1e6
                cpu = field(line, "compaction_time_cpu_micros") / 1e6
                if not quiet:
                    print(f"  t={at:6.1f}s cf={cf:8s} in={in_mb:7.1f}MB "
                          f"wall={wall:5.1f}s cpu={cpu:5.1f}s")
                c = total[cf]
                c["compactions"] += 1
                c["in_mb"] += in_mb
                c["wall_s"] += wall
                c["cpu_s"] += cpu
            elif '"flush_finished"' in line:
                total[cf]["flushes"] += 1
    print(path)
    for cf, c in sorted(total.items()):
        print(f"  {cf}: compactions={c['compactions']} in_mb={c['in_mb']:.0f} "
              f"wall_s={c['wall_s']:.1f} cpu_s={c['cpu_s']:.1f} "
              f"flushes={c['flushes']}")


def main():
    quiet = "-q" in sys.argv[1:]
    for path in (a for a in sys.argv[1:] if a != "-q"):
        summarize(path, quiet)


if __name__ == "__main__":
    main()
