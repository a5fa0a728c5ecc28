"""Runs the real salvo binary for integration tests, the demo and benchmarks.

In: overrides ("section.key" -> value, TOML syntax or bare strings) on top of
the embedded defaults, a spool directory. Out: the HTTP port, a small JSON
client, and process control (SIGTERM stop, kill -9, restart on the same
spool). Single-threaded callers.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

from tests.lib import procs

API_KEY = "salvo-demo-key"
_LISTEN_RE = re.compile(r"salvo: listening on http://([^ ]+):(\d+)")


def repo_root():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.dirname(os.path.dirname(here))


def find_binary():
    """$SALVO_BIN, the Bazel runfiles copy, or bazel-bin in the repo."""
    candidates = [os.environ.get("SALVO_BIN", "")]
    srcdir = os.environ.get("TEST_SRCDIR")
    if srcdir:
        candidates.append(os.path.join(srcdir, "salvo", "engine", "salvo"))
    candidates.append(os.path.join(repo_root(), "engine", "salvo"))
    candidates.append(os.path.join(repo_root(), "bazel-bin", "engine", "salvo"))
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise FileNotFoundError("salvo binary not found (build //engine:salvo)")


class Salvo:
    """A salvo process. Use as a context manager, or start()/stop()."""

    def __init__(self, spool, overrides=None, binary=None, log_path=None):
        self.spool = spool
        self.overrides = dict(overrides or {})
        self.binary = binary or find_binary()
        self.log_path = log_path or os.path.join(spool + ".log")
        self.proc = None
        self.port = None
        self._log = None
        self._reader = None

    def argv(self):
        argv = [self.binary, "--set", "server.http_listen=127.0.0.1:0",
                "--set", f"spool.path={self.spool}"]
        for k, v in self.overrides.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            argv += ["--set", f"{k}={v}"]
        return argv

    def start(self, timeout=30.0):
        self._log = open(self.log_path, "ab")
        self.proc = procs.spawn(self.argv(), stdout=subprocess.PIPE,
                                stderr=self._log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"salvo exited with {self.proc.returncode}; log: "
                        f"{self.tail_log()}")
                continue
            self._log.write(line)
            self._log.flush()
            m = _LISTEN_RE.search(line.decode(errors="replace"))
            if m:
                self.port = int(m.group(2))
                break
        else:
            raise RuntimeError("salvo did not start in time")
        # Keep draining stdout so the process never blocks on a full pipe.
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        return self

    def _drain(self):
        for line in self.proc.stdout:
            self._log.write(line)
            self._log.flush()

    def tail_log(self, limit=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-limit:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout=30.0):
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                procs.kill_group(self.proc.pid, grace=1.0, proc=self.proc)
        code = self.proc.returncode
        procs.kill_group(self.proc.pid, grace=0.5, proc=self.proc)
        self.proc = None
        self._close_log()
        return code

    def _close_log(self):
        if self._reader is not None:
            self._reader.join(timeout=2)
            self._reader = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill9(self):
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            procs.kill_group(self.proc.pid, grace=0.5, proc=self.proc)
            self.proc = None
            self._close_log()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- HTTP ---
    def request(self, method, path, body=None, key=API_KEY, headers=None,
                raw=None, timeout=60.0):
        """Returns (status, parsed JSON or text)."""
        url = f"http://127.0.0.1:{self.port}{path}"
        data = raw if raw is not None else (
            json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(url, data=data, method=method)
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, payload = resp.status, resp.read()
                ctype = resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            status, payload = e.code, e.read()
            ctype = e.headers.get("Content-Type", "")
        if "json" in ctype:
            return status, json.loads(payload or b"null")
        return status, payload.decode(errors="replace")

    def submit_campaign(self, campaign):
        status, body = self.request("POST", "/v1/campaigns", campaign)
        if status != 201:
            raise RuntimeError(f"campaign rejected: {status} {body}")
        return body["id"]

    def upload(self, content_id, body, content_type="application/x-ndjson",
               timeout=120.0):
        """POSTs a recipient list (one body, Content-Length) to a streamed
        campaign; returns (status, response text)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout)
        try:
            conn.request("POST", f"/v1/campaigns/{content_id}/recipients",
                         body=body,
                         headers={"Authorization": f"Bearer {API_KEY}",
                                  "Content-Type": content_type})
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def counts(self, content_id):
        status, body = self.request("GET", f"/v1/campaigns/{content_id}")
        if status != 200:
            raise RuntimeError(f"GET campaign: {status} {body}")
        return body["counts"]

    def wait_settled(self, content_id, timeout=120.0, want_delivered=None,
                     on_progress=None, poll=0.2):
        """Polls until nothing is queued or in flight (deferred ones wait for
        their retry) or want_delivered is reached; returns the counts."""
        deadline = time.monotonic() + timeout
        while True:
            c = self.counts(content_id)
            if on_progress:
                on_progress(c)
            done = c["queued"] == 0 and c["in_flight"] == 0
            if want_delivered is not None:
                done = c["delivered"] >= want_delivered
            if done:
                return c
            if time.monotonic() > deadline:
                raise TimeoutError(f"not settled after {timeout}s: {c}")
            time.sleep(poll)

    def metrics(self):
        status, text = self.request("GET", "/metrics", key=None)
        if status != 200:
            raise RuntimeError(f"/metrics: {status}")
        return text


def metric_value(text, name, labels=None):
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        lbl = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if labels and any(lbl.get(k) != v for k, v in labels.items()):
            continue
        total += float(m.group(3))
        found = True
    return total if found else None


def round_robin_routes(domains, ports):
    """The [routes] value that sends domains[i] to 127.0.0.1:ports[i % n]."""
    routes = ", ".join(f'{{domain="{d}", host="127.0.0.1", '
                       f'port={ports[i % len(ports)]}}}'
                       for i, d in enumerate(domains))
    return f"[{routes}]"


def build_campaign(recipients, domains, body_bytes=5000, name="campaign"):
    """A personalized campaign: `recipients` addresses spread round-robin
    over `domains`, html + text parts of about body_bytes in all."""
    para = ("<p>Dear {{first_name}}, your order {{order}} ships today. "
            "Thank you for shopping with us.</p>\n")
    html = "<html><body>\n" + para * max(1, (body_bytes // 2) // len(para)) + \
        "</body></html>\n"
    line = "Dear {{first_name}}, your order {{order}} ships today.\n"
    text = line * max(1, (body_bytes // 2) // len(line))
    rcpts = []
    for i in range(recipients):
        d = domains[i % len(domains)]
        rcpts.append({"email": f"user{i}@{d}",
                      "data": {"first_name": f"Customer {i}",
                               "order": f"#{100000 + i}"}})
    return {
        "name": name,
        "from": "Salvo Shop <news@shop.salvo-demo.test>",
        "subject": "Your order {{order}}, {{first_name}}",
        "html": html,
        "text": text,
        "headers": {"X-Campaign": name},
        "tags": [name],
        "recipients": rcpts,
    }
