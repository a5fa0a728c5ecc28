"""Where the duplicates of a kill_restart_test run come from (a diagnostic,
not a test). Input: the work folder of a run kept with SALVO_KEEP_PEERS=1
(its diag.json names the spool and the sinks' logs). Output, on stdout: per
duplicated address the kill it followed, how many lines its sink logged
between the first copy and the kill (negative: after the kill began), and
the recipient's stored events (one per attempt) read back through a salvo
started on the spool; then a summary by class.
Run: SALVO_BIN=.../engine/salvo /usr/bin/python3 -m tests.kill_restart_diag
/tmp/salvo-kill20-XXXX [--verbose]
"""
import collections
import json
import os
import sys
import urllib.parse

from tests.lib.salvo import Salvo


def first_copies(diag):
    """address -> (sink, byte offset of first copy, line number, copies)."""
    found = {}
    line_offsets = []
    for j, path in enumerate(diag["sinks"]):
        offsets = []
        offset = 0
        with open(path, "rb") as f:
            for line in f:
                if not line.startswith(b"!"):
                    offsets.append(offset)
                    for address in line.decode().split():
                        if address in found:
                            found[address][3] += 1
                        else:
                            found[address] = [j, offset, len(offsets) - 1, 1]
                offset += len(line)
        line_offsets.append(offsets)
    return found, line_offsets


def lines_before(offsets, at, mark):
    """Accepted-message lines logged in [at, mark) (negative if mark < at)."""
    import bisect
    a = bisect.bisect_left(offsets, at)
    m = bisect.bisect_left(offsets, mark)
    return m - a


def main():
    work = sys.argv[1]
    verbose = "--verbose" in sys.argv
    with open(os.path.join(work, "diag.json")) as f:
        diag = json.load(f)
    found, line_offsets = first_copies(diag)
    dups = {a: v for a, v in found.items() if v[3] > 1}
    s = Salvo(diag["spool"], {}, log_path=os.path.join(work, "diag.log"))
    s.start()
    classes = collections.Counter()
    distance = collections.Counter()
    try:
        for address, (j, offset, _, copies) in sorted(dups.items()):
            k = next((i for i, m in enumerate(diag["marks"]) if offset < m[j]),
                     len(diag["marks"]))
            if k < len(diag["marks"]):
                before = lines_before(line_offsets[j], offset,
                                      diag["pre_marks"][k][j])
            else:
                before = None
            q = urllib.parse.urlencode({"campaign": diag["campaign"],
                                      "email": address, "limit": 100})
            types = []
            for _ in range(50):  # pages: a page may end without a match
                status, body = s.request("GET", f"/v1/events?{q}")
                if status != 200:
                    types.append(f"HTTP {status}")
                    break
                types += [e["type"] for e in body["events"]]
                if not body.get("next"):
                    break
                q = urllib.parse.urlencode({
                    "campaign": diag["campaign"], "email": address,
                    "limit": 100, "after": body["next"]})
            delivered = types.count("delivered")
            deferred = types.count("deferred")
            if k == len(diag["marks"]):
                where = "after last kill"
            elif before is not None and before <= 0:
                where = "accepted across kill"
            else:
                where = "accepted before kill"
            cls = (where, f"delivered events={delivered}",
                   f"deferred={deferred}")
            classes[cls] += copies - 1
            if before is not None and before > 0:
                bucket = min(before // 4 * 4, 64)
                distance[bucket] += copies - 1
            if verbose:
                print(address, "kill", k, "lines_before", before, "copies",
                      copies, "events", types)
    finally:
        s.stop()
    print("duplicates", sum(v[3] - 1 for v in dups.values()))
    for cls, n in sorted(classes.items(), key=lambda x: -x[1]):
        print(n, *cls)
    print("first copy, sink lines logged before the kill began (bucket: n):")
    print(" ".join(f"{b}:{n}" for b, n in sorted(distance.items())))


if __name__ == "__main__":
    main()
