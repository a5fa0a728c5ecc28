"""Child process bookkeeping for test peers: nothing is ever left running.

In: commands to start (each in its own session, so its process group can be
killed as a whole). Out: Popen objects; kill_group() / kill_all().
Every started group is remembered until it is killed; an atexit hook and a
SIGTERM handler (Bazel sends SIGTERM on timeout) kill whatever is left.
Single-threaded test code only (the registry has no lock).
"""

import atexit
import os
import signal
import subprocess
import time

_live_groups = set()  # pgids started by spawn() or adopted by track_group()


def spawn(argv, **kwargs):
    """Starts argv in a new session; returns the Popen. Raises OSError."""
    proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
    _live_groups.add(proc.pid)
    return proc


def track_group(pgid):
    """Remembers a process group started elsewhere (e.g. Postfix's master)."""
    _live_groups.add(pgid)


def group_alive(pgid):
    """True while a non-zombie process is in group pgid. (kill(0) also
    succeeds on zombies, which the init here may reap only much later.)"""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def kill_group(pgid, grace=3.0, proc=None):
    """SIGTERM the group, wait up to grace seconds, then SIGKILL. Reaps proc."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is None:
            time.sleep(0.02)
            continue
        if not group_alive(pgid):
            break
        time.sleep(0.02)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc is not None:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    _live_groups.discard(pgid)


def kill_all():
    for pgid in list(_live_groups):
        kill_group(pgid, grace=1.0)


def _on_sigterm(signum, frame):
    # unittest records SystemExit as a test error and carries on; it lets
    # KeyboardInterrupt stop the run, after finally blocks and __exit__s ran.
    raise KeyboardInterrupt("SIGTERM")


atexit.register(kill_all)
if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
    signal.signal(signal.SIGTERM, _on_sigterm)
