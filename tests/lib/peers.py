"""Real peers for Salvo's integration tests: smtp-sink, Postfix smtpd, dnsmasq
and the scripted FakeSmtp, each a context manager on 127.0.0.1.

In: options per peer. Out: a running peer with .port (and readers for what it
received); leaving the `with` block stops it and removes its files.
A missing binary raises unittest.SkipTest. Every child runs in its own process
group, killed on exit, on SIGTERM and at interpreter exit (see procs.py).
Single-threaded test code only. Set SALVO_KEEP_PEERS=1 to keep temp dirs.

  with peers.SmtpSink() as sink: ...; sink.wait_for(100); sink.message_count()
  with peers.PostfixSmtpd(domains=["example.com"]) as mx: ...; mx.messages()
  with peers.Dnsmasq(mx={"example.com": [(10, "mx.example.com")]},
                     a={"mx.example.com": "127.0.0.1"}) as dns: dns.server
  with peers.FakeSmtp() as fake: ...; fake.messages(); fake.events("reply")
  ca = peers.TestCa(tmpdir); PostfixSmtpd(tls=True,
                                          tls_chain=ca.issue(["mx.x.test"]))
"""

import atexit
import base64
import collections
import glob
import grp
import json
import os
import pwd
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

from tests.lib import procs

SMTP_SINK = "/usr/sbin/smtp-sink"
POSTFIX = "/usr/sbin/postfix"
DNSMASQ = "/usr/sbin/dnsmasq"
OPENSSL = "/usr/bin/openssl"
FAKE_SMTP = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "fakes", "fake_smtp.py")
HOST = "127.0.0.1"


# ----------------------------------------------------------------- helpers

def runfile(path):
    """Absolute path of a workspace-relative data file (a Bazel data dep or a
    checkout file), e.g. runfile("engine/salvo")."""
    root = os.environ.get("SALVO_RUNFILES_ROOT") or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, path)


def require_binary(path):
    """Raises unittest.SkipTest unless path is an executable file."""
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest("peer binary %s is not installed" % path)


def free_port(udp_too=False):
    """A TCP port on 127.0.0.1 that is free now (and also free for UDP)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((HOST, 0))
            port = tcp.getsockname()[1]
            if not udp_too:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((HOST, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port found")


def wait_port(port, timeout=10.0, host=HOST, proc=None, alive=None):
    """Waits until a TCP connect to host:port succeeds. Raises TimeoutError,
    or RuntimeError if proc (a Popen) exits or alive() turns False first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("peer exited with %s before port %d opened"
                               % (proc.returncode, port))
        if alive is not None and not alive():
            raise RuntimeError("peer died before port %d opened" % port)
        if time.monotonic() > deadline:
            raise TimeoutError("port %d not open after %.1fs" % (port, timeout))
        time.sleep(0.05)


def _poll(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s"
                               % (timeout, what))
        time.sleep(0.05)


def _tail(path, limit=4000):
    try:
        with open(path, "rb") as f:
            return f.read()[-limit:].decode("utf-8", "replace")
    except OSError:
        return ""


_live_peers = []  # entered and not yet exited, for the atexit hook


@atexit.register
def _stop_live_peers():
    """Stops peers whose __exit__ never ran (e.g. tearDownClass skipped after
    an interrupt); procs' own hook then kills anything left."""
    for peer in list(reversed(_live_peers)):
        peer.__exit__(None, None, None)


class _Peer:
    """Shared lifetime: a temp dir, one child process group, clean exit."""

    _prefix = "salvo-peer-"

    def __init__(self):
        self.dir = None
        self.proc = None
        self.port = None

    def __enter__(self):
        # Short paths under /tmp: Postfix's UNIX sockets must fit in 108 bytes.
        self.dir = tempfile.mkdtemp(prefix=self._prefix, dir="/tmp")
        _live_peers.append(self)
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            self._stop()
        finally:
            if self in _live_peers:
                _live_peers.remove(self)
            if self.dir and not os.environ.get("SALVO_KEEP_PEERS"):
                shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def _stop(self):
        if self.proc is not None:
            procs.kill_group(self.proc.pid, proc=self.proc)
            self.proc = None

    def _spawn_listening(self, make_argv, stdout_name, udp_too=False,
                         host=HOST, port=None):
        """Starts make_argv(port) on a free port (or the given one); retries
        if the port was taken between free_port() and the child's bind()."""
        fixed = port
        for _ in range(3):
            port = fixed or free_port(udp_too=udp_too)
            out = open(os.path.join(self.dir, stdout_name), "wb")
            err = open(os.path.join(self.dir, stdout_name + ".err"), "wb")
            with out, err:
                self.proc = procs.spawn(make_argv(port), stdout=out,
                                        stderr=err, stdin=subprocess.DEVNULL)
            try:
                wait_port(port, host=host, proc=self.proc)
                self.port = port
                return
            except RuntimeError:
                self._stop()
        raise RuntimeError("peer failed to start: %s"
                           % _tail(os.path.join(self.dir, stdout_name + ".err")))


# ---------------------------------------------------------------- smtp-sink

def _whole_seconds(value, what, zero_ok=False):
    if value != int(value) or value < (0 if zero_ok else 1):
        raise ValueError("smtp-sink %s take whole seconds >= %d, got %r "
                         "(FakeSmtp(delays=...) takes fractions)"
                         % (what, 0 if zero_ok else 1, value))
    return int(value)


class SmtpSink(_Peer):
    """Postfix's smtp-sink(1): accepts and discards mail, fast.

    Counting: smtp-sink runs with -c, which rewrites "sess=N quit=N mesg=N"
    on stdout (CR separated, flushed) whenever a session ends, QUIT arrives or
    "." is received. We redirect stdout to a file and read the last record:
    cheap at any rate, unlike -d/-D per-message dumps. Note mesg counts every
    "." received, even when a reply injected by reject_soft/hard was a 4xx/5xx.

    Reply injection (smtp-sink flags): reject_soft=["RCPT"] (-r, 4xx),
    reject_hard=[...] (-f, 5xx), disconnect=[...] (-q, hang up without reply),
    disconnect_421=[...] (-Q), delays={"RCPT": 2} (-W cmd:delay), abort_data
    =delay (-A: 550 after DATA). smtp-sink takes whole seconds only (delays
    >= 1): anything else raises ValueError; use FakeSmtp(delays=...) for
    sub-second reply delays. Commands: CONNECT HELO EHLO MAIL RCPT DATA .
    RSET NOOP QUIT. -r/-f imply no PIPELINING. pipelining=False adds -p,
    enhanced_codes=False adds -E, eightbit=False adds -8. dump=True appends
    every transaction to one file (-D, slow; read with dump_bytes()).
    """

    _prefix = "salvo-sink-"

    def __init__(self, args=(), pipelining=True, enhanced_codes=True,
                 eightbit=True, reject_soft=(), reject_hard=(), disconnect=(),
                 disconnect_421=(), delays=None, abort_data=None, dump=False,
                 backlog=1024, max_conns=1024, hostname="smtp-sink.test",
                 host=HOST, port=None):
        super().__init__()
        # host/port: listen elsewhere on loopback (e.g. 127.0.0.2 on the
        # port of another sink, as a second MX on the same SMTP port).
        self._host = host
        self._fixed_port = port
        flags = ["-c", "-m", str(max_conns), "-h", hostname]
        if os.geteuid() == 0:
            flags += ["-u", "root"]
        if not pipelining:
            flags.append("-p")
        if not enhanced_codes:
            flags.append("-E")
        if not eightbit:
            flags.append("-8")
        for flag, cmds in (("-r", reject_soft), ("-f", reject_hard),
                           ("-q", disconnect), ("-Q", disconnect_421)):
            if cmds:
                flags += [flag, ",".join(cmds)]
        for cmd, delay in (delays or {}).items():
            flags += ["-W", "%s:%d" % (cmd, _whole_seconds(delay, "delays"))]
        if abort_data is not None:
            flags += ["-A", "%d" % _whole_seconds(abort_data, "abort_data",
                                                  zero_ok=True)]
        self._dump = dump
        self._flags = flags + list(args)
        self._backlog = backlog

    def _start(self):
        require_binary(SMTP_SINK)
        flags = list(self._flags)
        if self._dump:
            flags += ["-D", os.path.join(self.dir, "dump")]
        self._spawn_listening(
            lambda port: [SMTP_SINK] + flags +
            ["%s:%d" % (self._host, port), str(self._backlog)], "counters",
            host=self._host, port=self._fixed_port)

    def counters(self):
        """{"sess": n, "quit": n, "mesg": n} from the latest -c record."""
        with open(os.path.join(self.dir, "counters"), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 512))
            tail = f.read().decode("ascii", "replace")
        # Each record ends in "\r"; the text after the last one may be a
        # record still being written, so it is ignored.
        records = [r for r in tail.replace("\n", "\r").split("\r")[:-1]
                   if r.startswith("sess=") and r.count("=") == 3]
        result = {"sess": 0, "quit": 0, "mesg": 0}
        if records:
            for field in records[-1].split():
                key, _, value = field.partition("=")
                if value.isdigit():
                    result[key] = int(value)
        return result

    def message_count(self):
        return self.counters()["mesg"]

    def wait_for(self, n, timeout=30.0):
        _poll(lambda: self.message_count() >= n, timeout,
              "%d messages at smtp-sink" % n)

    def dump_bytes(self):
        """The -D dump file (only with dump=True)."""
        with open(os.path.join(self.dir, "dump"), "rb") as f:
            return f.read()


# --------------------------------------------------------- Postfix smtpd (MX)

_MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
local unix - n n - - local
virtual unix - n n - - virtual
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


class PostfixSmtpd(_Peer):
    """A private Postfix instance acting as a receiving MX on 127.0.0.1.

    Everything lives in one temp dir: etc/ (main.cf, master.cf), spool/
    (queue_directory), data/, maillog, mail/. Mail for the given domains is
    accepted for any local part and delivered by virtual(8) into one Maildir,
    mail/inbox/new/, one file per recipient (its Delivered-To header names
    the recipient; messages(rcpt=...) filters on it). Other domains get 554
    (relay access denied); nothing is ever sent out, not even bounces.
    Stored messages are as Postfix writes them: Return-Path, X-Original-To,
    Delivered-To and Received prepended (no other header added or rewritten),
    LF line endings, dots unstuffed. Compare bodies with split_message().

    strict=True: smtpd_forbid_bare_newline = reject (550 on any bare LF, also
    from 127.0.0.0/8; "yes" would only normalize it),
    strict_rfc821_envelopes = yes, smtpd_helo_required = yes.
    tls=True: STARTTLS offered (security level may) with a self-signed cert
    made by the openssl CLI; .cert_file is its path. tls_chain=(key, cert)
    PEM paths (e.g. from TestCa.issue) serve that certificate instead.
    main_cf={k: v} overrides.
    """

    _prefix = "salvo-pf-"

    def __init__(self, domains=("example.com", "example.net", "example.org"),
                 tls=False, strict=True, main_cf=None, hostname="mx.test",
                 tls_chain=None):
        super().__init__()
        self.tls_chain = tls_chain
        self.domains = list(domains)
        self.tls = tls
        self.strict = strict
        self.hostname = hostname
        self.extra = dict(main_cf or {})
        self.cert_file = None
        self._master_pid = None

    @property
    def etc(self):
        return os.path.join(self.dir, "etc")

    def _start(self):
        require_binary(POSTFIX)
        if os.geteuid() != 0:
            raise unittest.SkipTest("a private Postfix instance needs root")
        try:
            self._uid = pwd.getpwnam("postfix").pw_uid
            self._gid = grp.getgrnam("postdrop").gr_gid
        except KeyError:
            raise unittest.SkipTest("no postfix user / postdrop group")
        os.chmod(self.dir, 0o755)  # daemons run as postfix / nobody
        os.makedirs(self.etc)
        mail = os.path.join(self.dir, "mail")
        os.makedirs(mail)
        os.chown(mail, 65534, 65534)
        self.port = free_port()
        conf = {
            "compatibility_level": "3.6",
            "queue_directory": os.path.join(self.dir, "spool"),
            "data_directory": os.path.join(self.dir, "data"),
            "maillog_file": os.path.join(self.dir, "maillog"),
            "maillog_file_prefixes": self.dir,
            "myhostname": self.hostname,
            "mydomain": "test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": HOST,
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_banner": "$myhostname ESMTP Postfix",
            "smtpd_peername_lookup": "no",
            "smtp_dns_support_level": "disabled",
            # Nothing ever leaves 127.0.0.1, not even bounces.
            "default_transport": "error:outbound mail disabled on test MX",
            "relay_transport": "error:outbound mail disabled on test MX",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "append_dot_mydomain": "no",
            # Treat us as a remote client: no header rewriting, none added.
            "local_header_rewrite_clients": "",
            "biff": "no",
            "smtpd_relay_restrictions": "reject_unauth_destination",
            "smtpd_recipient_restrictions": "",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_error_sleep_time": "0s",
            "in_flow_delay": "0s",
            "message_size_limit": str(50 * 1024 * 1024),
            "virtual_mailbox_domains": " ".join(self.domains),
            "virtual_mailbox_base": mail,
            "virtual_mailbox_maps": "static:inbox/",
            "virtual_mailbox_limit": "0",
            "virtual_uid_maps": "static:65534",
            "virtual_gid_maps": "static:65534",
        }
        if self.strict:
            conf.update({
                "smtpd_forbid_bare_newline": "reject",
                "smtpd_forbid_bare_newline_exclusions": "",
                "strict_rfc821_envelopes": "yes",
                "smtpd_helo_required": "yes",
            })
        if self.tls:
            require_binary(OPENSSL)
            key = os.path.join(self.etc, "key.pem")
            self.cert_file = os.path.join(self.etc, "cert.pem")
            if self.tls_chain:
                shutil.copyfile(self.tls_chain[0], key)
                shutil.copyfile(self.tls_chain[1], self.cert_file)
            else:
                subprocess.run(
                    [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                     "-keyout", key, "-out", self.cert_file, "-days", "2",
                     "-subj", "/CN=" + self.hostname],
                    check=True, capture_output=True, timeout=60)
            conf.update({
                "smtpd_tls_security_level": "may",
                "smtpd_tls_chain_files": key + ", " + self.cert_file,
                "smtpd_tls_loglevel": "1",
            })
        conf.update(self.extra)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            for key, value in conf.items():
                f.write("%s = %s\n" % (key, value))
        self._make_queue_tree()
        for attempt in range(3):
            if attempt:
                self.port = free_port()  # lost a race for the last one
            if self._start_master():
                return
        raise RuntimeError("postfix smtpd never listened:\n" + self.maillog())

    def _start_master(self):
        """Starts master with smtpd on self.port; False if it did not listen."""
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(_MASTER_CF.format(listen="%s:%d" % (HOST, self.port)))
        # Skip postfix-script's slow integrity checks (find over shared dirs):
        # _make_queue_tree() did what they would create.
        open(os.path.join(self.dir, "spool", "quick-start"), "w").close()
        pid_file = os.path.join(self.dir, "spool", "pid", "master.pid")
        if os.path.exists(pid_file):
            os.remove(pid_file)  # left by a master that failed to bind
        try:
            self._postfix("start")
        except RuntimeError as error:
            if "Address already in use" in str(error):
                return False  # master exits when it cannot bind
            raise
        _poll(lambda: os.path.exists(pid_file), 10, "postfix master.pid")
        with open(pid_file) as f:
            self._master_pid = int(f.read().split()[0])
        procs.track_group(self._master_pid)  # master is a session leader
        try:
            wait_port(self.port, timeout=10,
                      alive=lambda: procs.group_alive(self._master_pid))
            return True
        except (TimeoutError, RuntimeError):
            self._stop()
            return False

    def _make_queue_tree(self):
        """What `postfix post-install create-missing` does for our dirs (as
        in /etc/postfix/postfix-files), minus its seconds of postconf calls."""
        uid, gid = self._uid, self._gid
        spool = os.path.join(self.dir, "spool")
        layout = [(spool, 0, -1, 0o755),
                  (os.path.join(self.dir, "data"), uid, -1, 0o700),
                  (os.path.join(spool, "pid"), 0, -1, 0o755),
                  (os.path.join(spool, "maildrop"), uid, gid, 0o730),
                  (os.path.join(spool, "public"), uid, gid, 0o710)]
        for name in ("active", "bounce", "corrupt", "defer", "deferred",
                     "flush", "hold", "incoming", "private", "saved", "trace"):
            layout.append((os.path.join(spool, name), uid, -1, 0o700))
        for path, owner, group, mode in layout:
            os.mkdir(path)
            os.chown(path, owner, group)
            os.chmod(path, mode)

    def _postfix(self, *verb):
        result = subprocess.run([POSTFIX, "-c", self.etc] + list(verb),
                                capture_output=True, timeout=60)
        if result.returncode != 0 and verb[0] != "stop":
            raise RuntimeError("postfix %s failed: %s\n%s" % (
                " ".join(verb),
                (result.stdout + result.stderr).decode("utf-8", "replace"),
                _tail(os.path.join(self.dir, "maillog"))))

    def _stop(self):
        # The pid file also covers a master started by an interrupted start.
        pid = self._master_pid or self._master_pid_from_file()
        self._master_pid = None
        if pid is None:
            return
        try:
            self._postfix("stop")
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and procs.group_alive(pid):
            time.sleep(0.05)
        procs.kill_group(pid, grace=1.0)

    def _master_pid_from_file(self):
        try:
            with open(os.path.join(self.dir, "spool", "pid",
                                   "master.pid")) as f:
                pid = int(f.read().split()[0])
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                return pid if b"master" in f.read() else None
        except (OSError, ValueError, IndexError):
            return None

    def maillog(self):
        return _tail(os.path.join(self.dir, "maillog"), limit=1 << 20)

    def _files(self):
        files = glob.glob(os.path.join(self.dir, "mail", "inbox", "new", "*"))
        files.sort(key=lambda p: (os.stat(p).st_mtime_ns, p))
        return files

    def messages(self, rcpt=None):
        """Raw stored messages (bytes), oldest first; one per recipient.
        rcpt: only those whose Delivered-To header is this address."""
        result = []
        for path in self._files():
            with open(path, "rb") as f:
                raw = f.read()
            if rcpt is None or delivered_to(raw) == rcpt.lower():
                result.append(raw)
        return result

    def wait_for(self, n, timeout=30.0, rcpt=None):
        _poll(lambda: len(self.messages(rcpt) if rcpt else self._files()) >= n,
              timeout, "%d messages delivered by Postfix" % n)


class TestCa:
    """A throwaway certificate authority made with the openssl CLI (P-256
    keys, valid 2 days) in `directory`, which the caller owns and removes.

    .cert_file is the CA certificate (give it to Salvo as tls.ca_file);
    issue(["mx.a.test"]) returns (key_file, cert_file) of a server
    certificate signed by this CA with those names as subjectAltName DNS
    entries (the CN is the first name).
    """

    def __init__(self, directory, name="Salvo Test CA"):
        require_binary(OPENSSL)
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self._serial = 1
        tag = "".join(c if c.isalnum() else "_" for c in name)
        self.key_file = os.path.join(directory, tag + ".key")
        self.cert_file = os.path.join(directory, tag + ".pem")
        self._openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", self.key_file,
            "-out", self.cert_file, "-days", "2", "-subj", "/CN=" + name,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def _openssl(self, *args):
        subprocess.run([OPENSSL] + list(args), check=True,
                       capture_output=True, timeout=60)

    def issue(self, dns_names):
        self._serial += 1
        base = os.path.join(self.dir, "server%d" % self._serial)
        key, csr, cert, ext = (base + ".key", base + ".csr", base + ".pem",
                               base + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints = CA:FALSE\n"
                    "keyUsage = critical, digitalSignature\n"
                    "extendedKeyUsage = serverAuth\n"
                    "subjectAltName = %s\n"
                    % ", ".join("DNS:" + n for n in dns_names))
        self._openssl("req", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                      key, "-out", csr, "-subj", "/CN=" + dns_names[0])
        self._openssl("x509", "-req", "-in", csr, "-CA", self.cert_file,
                      "-CAkey", self.key_file, "-set_serial",
                      str(self._serial), "-days", "2", "-extfile", ext,
                      "-out", cert)
        return key, cert


def delivered_to(raw):
    """The lowercased Delivered-To address Postfix put on a stored message."""
    header, _ = split_message(raw)
    for line in header.split(b"\n"):
        if line.lower().startswith(b"delivered-to:"):
            return line.split(b":", 1)[1].strip().decode().lower()
    return None


def split_message(raw):
    """(header bytes, body bytes) split at the first empty line (LF or CRLF)."""
    found = [(at, len(sep)) for sep in (b"\r\n\r\n", b"\n\n")
             for at in [raw.find(sep)] if at >= 0]
    if not found:
        return raw, b""
    at, length = min(found)
    return raw[:at + length // 2], raw[at + length:]


# ----------------------------------------------------------------- dnsmasq

class Dnsmasq(_Peer):
    """dnsmasq(8) in the foreground as an authoritative-only test resolver.

    mx={"example.com": [(10, "mx1.example.com")]}, a={"mx1.example.com":
    "127.0.0.1"} (IPv6 literals make AAAA records), txt={"name": "value"},
    cname={"alias": "target"}, ttl for all of them. local=[domains] answered only from this data
    (unknown names NXDOMAIN); by default the last two labels of every name
    given. No upstream servers, no /etc/hosts. A TXT value is passed as one
    --txt-record argument, so commas split it into several strings.
    .server is "127.0.0.1:PORT" (UDP and TCP).
    """

    _prefix = "salvo-dns-"

    def __init__(self, mx=None, a=None, txt=None, cname=None, local=None,
                 ttl=60, extra_args=()):
        super().__init__()
        self.ttl = ttl
        self.mx = dict(mx or {})
        self.a = dict(a or {})
        self.txt = dict(txt or {})
        self.cname = dict(cname or {})
        if local is None:
            names = list(self.mx) + list(self.a) + list(self.txt) + \
                list(self.cname)
            local = sorted({".".join(n.rstrip(".").split(".")[-2:])
                            for n in names})
        self.local = list(local)
        self.extra_args = list(extra_args)

    @property
    def server(self):
        return "%s:%d" % (HOST, self.port)

    def _argv(self, port):
        argv = [DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts",
                "--conf-file=/dev/null", "--pid-file=",
                "--listen-address=" + HOST, "--bind-interfaces",
                "--port=%d" % port, "--local-ttl=%d" % self.ttl,
                "--log-facility=-", "--log-queries"]
        for domain in self.local:
            argv.append("--local=/%s/" % domain)
        for domain, hosts in self.mx.items():
            for pref, host in hosts:
                argv.append("--mx-host=%s,%s,%d" % (domain, host, pref))
        for host, ips in self.a.items():
            ips = [ips] if isinstance(ips, str) else list(ips)
            argv.append("--host-record=%s,%s" % (host, ",".join(ips)))
        for name, value in self.txt.items():
            argv.append("--txt-record=%s,%s" % (name, value))
        for alias, target in self.cname.items():
            argv.append("--cname=%s,%s" % (alias, target))
        return argv + self.extra_args

    def _start(self):
        require_binary(DNSMASQ)
        for _ in range(3):
            self._spawn_listening(self._argv, "dnsmasq.log", udp_too=True)
            try:
                _poll(self._answers, 5, "dnsmasq to answer UDP")
                return
            except TimeoutError:
                self._stop()
        raise RuntimeError("dnsmasq did not answer: %s"
                           % _tail(os.path.join(self.dir, "dnsmasq.log.err")))

    def _answers(self):
        try:
            self.query(self.local[0] if self.local else "localhost", "SOA",
                       timeout=0.2)
            return True
        except (OSError, TimeoutError):
            return False

    def query(self, name, qtype="A", timeout=1.0):
        return dns_query(self.port, name, qtype, timeout=timeout)

    def log(self):
        return _tail(os.path.join(self.dir, "dnsmasq.log.err"), 1 << 20)


# ------------------------------------------------- a minimal DNS stub client

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15,
          "TXT": 16, "AAAA": 28}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN",
          4: "NOTIMP", 5: "REFUSED"}


class DnsResponse:
    """rcode ("NOERROR", "NXDOMAIN", ...), aa (bool) and answers: a list of
    (name, type name, ttl, value); value is "1.2.3.4" for A/AAAA, (pref, host)
    for MX, the joined text for TXT, a name for CNAME/NS/PTR, else bytes."""

    def __init__(self, rcode, aa, answers):
        self.rcode = rcode
        self.aa = aa
        self.answers = answers

    def values(self, qtype=None):
        return [v for _, t, _, v in self.answers if qtype in (None, t)]

    def __repr__(self):
        return "DnsResponse(%s, %r)" % (self.rcode, self.answers)


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


def _decode_name(packet, offset):
    """Returns (name, offset after the name in the original position)."""
    labels, end, hops = [], None, 0
    while True:
        length = packet[offset]
        if length & 0xC0 == 0xC0:
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | packet[offset + 1]
            hops += 1
            if hops > 64:
                raise ValueError("DNS compression loop")
            continue
        offset += 1
        if length == 0:
            break
        labels.append(packet[offset:offset + length].decode("ascii"))
        offset += length
    return ".".join(labels), (end if end is not None else offset)


def dns_query(port, name, qtype="A", host=HOST, timeout=1.0, seed=None):
    """One UDP query to host:port; returns a DnsResponse. Raises TimeoutError
    (socket.timeout) when nothing answers."""
    qtype_code = QTYPES[qtype] if isinstance(qtype, str) else int(qtype)
    qid = random.Random(seed).randrange(1 << 16)
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + \
        _encode_name(name) + struct.pack(">HH", qtype_code, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (host, port))
        deadline = time.monotonic() + timeout
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            reply = sock.recv(65535)
            if len(reply) >= 12 and struct.unpack(">H", reply[:2])[0] == qid:
                break
    _, flags, qd, an, _, _ = struct.unpack(">HHHHHH", reply[:12])
    offset = 12
    for _ in range(qd):
        _, offset = _decode_name(reply, offset)
        offset += 4
    names = {v: k for k, v in QTYPES.items()}
    answers = []
    for _ in range(an):
        rname, offset = _decode_name(reply, offset)
        rtype, _, ttl, rdlen = struct.unpack(">HHIH", reply[offset:offset + 10])
        offset += 10
        rdata = reply[offset:offset + rdlen]
        tname = names.get(rtype, str(rtype))
        if rtype == 1:
            value = socket.inet_ntop(socket.AF_INET, rdata)
        elif rtype == 28:
            value = socket.inet_ntop(socket.AF_INET6, rdata)
        elif rtype == 15:
            value = (struct.unpack(">H", rdata[:2])[0],
                     _decode_name(reply, offset + 2)[0])
        elif rtype in (2, 5, 12):
            value = _decode_name(reply, offset)[0]
        elif rtype == 16:
            parts, i = [], 0
            while i < len(rdata):
                parts.append(rdata[i + 1:i + 1 + rdata[i]].decode("utf-8",
                                                                  "replace"))
                i += 1 + rdata[i]
            value = "".join(parts)
        else:
            value = bytes(rdata)
        answers.append((rname, tname, ttl, value))
        offset += rdlen
    return DnsResponse(RCODES.get(flags & 0xF, str(flags & 0xF)),
                       bool(flags & 0x0400), answers)


# ---------------------------------------------------------------- FakeSmtp

def _rcpts_only_record(line):
    """One line of a FakeSmtp --rcpts-only log as a record."""
    text = line.decode("utf-8", "replace")
    if text.startswith("!"):
        code, _, address = text[1:].partition(" ")
        return {"event": "reply", "cmd": "RCPT", "code": int(code),
                "arg": address}
    return {"event": "message", "rcpts": text.split()}


def assert_each_delivered(test, sinks, want):
    """Asserts (unittest `test`) that every address in `want` reached the
    rcpts_only FakeSmtp `sinks` at least once and no other address did;
    returns (deliveries per address, duplicates)."""
    counts = collections.Counter()
    for sink in sinks:
        counts.update(sink.rcpt_counts())
    missing = want - set(counts)
    test.assertFalse(missing, f"{len(missing)} never delivered, e.g. "
                     f"{sorted(missing)[:5]}")
    test.assertEqual(set(counts) - want, set())
    return counts, sum(n - 1 for n in counts.values())


class FakeSmtp(_Peer):
    """tests/fakes/fake_smtp.py as a child process (see its header for the
    recipient-driven behaviours). messages() lists accepted messages as dicts
    (with "data" decoded to bytes); events(kind) lists other log records.
    delays={"RCPT": 0.002} delays every reply to that verb (fractions are
    fine, unlike smtp-sink); record_data=False logs sizes but no bodies.
    tempfail_percent=5 answers 451 to the first RCPT of about 5% of the
    addresses (the same ones every run); rcpts_only=True logs nothing but the
    recipients of accepted messages and refused RCPTs (fast): messages() then
    hold only "rcpts", events("reply") only "code" and "arg" (the address of
    a refused RCPT); rcpt_counts() counts deliveries per address."""

    _prefix = "salvo-fake-"

    def __init__(self, pipelining=True, banner_delay=0.0, slow_delay=2.0,
                 max_size=None, delays=None, record_data=True, extra_args=(),
                 broken_starttls=False, tempfail_percent=0.0,
                 rcpts_only=False):
        super().__init__()
        args = []
        self.rcpts_only = rcpts_only
        if tempfail_percent:
            args += ["--tempfail-percent", "%g" % tempfail_percent]
        if rcpts_only:
            args.append("--rcpts-only")
        if broken_starttls:
            args.append("--broken-starttls")
        for verb, seconds in (delays or {}).items():
            args += ["--delay", "%s:%g" % (verb, seconds)]
        if not record_data:
            args.append("--no-data")
        if not pipelining:
            args.append("--no-pipelining")
        if banner_delay:
            args += ["--banner-delay", str(banner_delay)]
        args += ["--slow-delay", str(slow_delay)]
        if max_size is not None:
            args += ["--max-size", str(max_size)]
        self._args = args + list(extra_args)

    @property
    def log_path(self):
        return os.path.join(self.dir, "fake_smtp.jsonl")

    def _start(self):
        if not os.path.exists(FAKE_SMTP):
            raise unittest.SkipTest("%s is missing" % FAKE_SMTP)
        ready = os.path.join(self.dir, "ready")
        with open(ready, "wb") as out, \
                open(os.path.join(self.dir, "stderr"), "wb") as err:
            self.proc = procs.spawn(
                [sys.executable, FAKE_SMTP, "--port", "0", "--log",
                 self.log_path] + self._args,
                stdout=out, stderr=err, stdin=subprocess.DEVNULL)

        def is_ready():
            if self.proc.poll() is not None:
                raise RuntimeError("fake_smtp exited: %s" % _tail(
                    os.path.join(self.dir, "stderr")))
            with open(ready, "rb") as f:
                line = f.read()
            if line.startswith(b"READY ") and line.endswith(b"\n"):
                self.port = int(line.split()[1])
                return True
            return False

        _poll(is_ready, 15, "fake_smtp to listen")

    def _records(self):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().split(b"\n")
        except FileNotFoundError:
            return []
        # The last element is "" or a line still being written.
        if self.rcpts_only:
            return [_rcpts_only_record(line) for line in lines[:-1] if line]
        return [json.loads(line) for line in lines[:-1] if line]

    def rcpt_counts(self):
        """collections.Counter: address -> messages accepted for it."""
        counts = collections.Counter()
        for record in self._records():
            if record["event"] == "message":
                counts.update(record["rcpts"])
        return counts

    def messages(self):
        result = []
        for record in self._records():
            if record["event"] == "message":
                if "data_b64" in record:
                    record["data"] = base64.b64decode(record.pop("data_b64"))
                result.append(record)
        return result

    def events(self, kind=None):
        return [r for r in self._records()
                if r["event"] != "message" and kind in (None, r["event"])]

    def wait_for(self, n, timeout=30.0):
        _poll(lambda: len(self.messages()) >= n, timeout,
              "%d messages at FakeSmtp" % n)
