#!/usr/bin/python3
"""Writes the seed corpora under tests/fuzz/corpus/<target>/ (committed).

Run from anywhere: /usr/bin/python3 tests/fuzz/make_seeds.py. Deterministic:
rerunning rewrites the same files. See client_fsm_fuzz.cc for the layout of a
client_fsm seed (server transcript, control bytes from the end, config last).
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

BANNER = b"220 mx.example.com ESMTP Postfix (Debian/GNU)\r\n"
EHLO_POSTFIX = (b"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
                b"250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n"
                b"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
                b"250-SMTPUTF8\r\n250 CHUNKING\r\n")
EHLO_GMAIL = (b"250-mx.google.com at your service, [127.0.0.1]\r\n"
              b"250-SIZE 157286400\r\n250-8BITMIME\r\n250-STARTTLS\r\n"
              b"250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-CHUNKING\r\n"
              b"250 SMTPUTF8\r\n")
EHLO_PLAIN = b"250-mx.example.com\r\n250 8BITMIME\r\n"
EHLO_NO_TLS = EHLO_POSTFIX.replace(b"250-STARTTLS\r\n", b"").replace(
    b"250 CHUNKING", b"250 XFORWARD NAME ADDR")
EHLO_BDAT = EHLO_GMAIL.replace(b"250-STARTTLS\r\n", b"")
TLS_GO = b"220 2.0.0 Ready to start TLS\r\n"
MAIL_OK = b"250 2.1.0 Ok\r\n"
RCPT_OK = b"250 2.1.5 Ok\r\n"
RCPT_UNKNOWN = (b"550 5.1.1 <r0.1@to.fuzz.example>: Recipient address "
                b"rejected: User unknown in local recipient table\r\n")
DATA_GO = b"354 End data with <CR><LF>.<CR><LF>\r\n"
QUEUED = b"250 2.0.0 Ok: queued as 4F1A2C0E1B\r\n"
BYE = b"221 2.0.0 Bye\r\n"


TLS_OK = "tls-ok"      # the TLS handshake completes
TLS_FAIL = "tls-fail"  # the TLS handshake fails


def fsm_config(pipelining, txns, rcpts, quit_now=False, chunking=True,
               tls=0):
    """tls: 0 opportunistic, 1 disabled, 2 required."""
    v = ((1 if pipelining else 0) | ((txns - 1) << 1) | ((rcpts - 1) << 3) |
         (0x80 if quit_now else 0) | (0 if chunking else 0x100) | (tls << 9))
    return bytes([v & 0xFF, v >> 8])  # read as a uint16, last byte high


def fsm_seed(turns, config, bytewise=False):
    """Each turn is one read of server bytes (or a TLS event); a reply that
    answers a command must not share a read with the reply before it."""
    data, controls = b"", []
    for turn in turns:
        if turn == TLS_OK:
            controls.append(0x01)
            continue
        if turn == TLS_FAIL:
            controls.append(0xF5)
            continue
        data += turn
        if bytewise:
            controls += [0xF5] * len(turn)
        else:
            for i in range(0, len(turn), 0xEF):
                controls.append(len(turn[i:i + 0xEF]))
    # Controls are read from the end backwards, so they are stored reversed.
    return data + bytes(reversed(controls)) + config


def dns_name(name):
    out = b""
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def dns_header(qid, flags, qd, an, ns, ar):
    return struct.pack(">HHHHHH", qid, flags, qd, an, ns, ar)


def seeds():
    s = {}
    # reply_parser: real server output, plus a few broken streams.
    s["reply_parser/postfix_session"] = (BANNER + EHLO_POSTFIX + MAIL_OK +
                                         RCPT_OK + RCPT_UNKNOWN + DATA_GO +
                                         QUEUED + BYE)
    s["reply_parser/gmail_ehlo"] = (
        b"220 mx.google.com ESMTP a1si1234567wrb.1 - gsmtp\r\n" + EHLO_GMAIL)
    s["reply_parser/greylist_bare_lf"] = (
        b"451-4.7.1 Greylisted, see http://postgrey.example/\n"
        b"451-4.7.1 please try again later\n451 4.7.1 thanks\n")
    s["reply_parser/exchange"] = (
        b"220 EX01.corp.example Microsoft ESMTP MAIL Service ready\r\n"
        b"250-EX01.corp.example Hello [127.0.0.1]\r\n250-SIZE 37748736\r\n"
        b"250-PIPELINING\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n"
        b"250-STARTTLS\r\n250-8BITMIME\r\n250-BINARYMIME\r\n250 CHUNKING\r\n"
        b"452 4.5.3 Too many recipients\r\n")
    s["reply_parser/inconsistent"] = b"250-first\r\n251 second\r\n250 ok\r\n"
    s["reply_parser/no_text"] = b"250\r\n354\r\n421 4.4.2 timeout\r\n"

    # client_fsm: whole sessions, one read per server turn.
    s["client_fsm/pipelined_one"] = fsm_seed(
        [BANNER, EHLO_NO_TLS, MAIL_OK + RCPT_OK + DATA_GO, QUEUED, BYE],
        fsm_config(True, 1, 1))
    s["client_fsm/pipelined_two_txns_rejected_rcpt"] = fsm_seed(
        [BANNER, EHLO_NO_TLS, MAIL_OK + RCPT_OK + RCPT_UNKNOWN + DATA_GO,
         QUEUED, MAIL_OK + RCPT_OK + RCPT_OK + DATA_GO, QUEUED, BYE],
        fsm_config(True, 2, 2))
    s["client_fsm/plain_one_per_round_trip"] = fsm_seed(
        [BANNER, EHLO_PLAIN, MAIL_OK, RCPT_OK, RCPT_OK, DATA_GO, QUEUED, BYE],
        fsm_config(False, 1, 2))
    s["client_fsm/ehlo_rejected_helo"] = fsm_seed(
        [BANNER, b"502 5.5.2 Error: command not recognized\r\n",
         b"250 mx.example.com\r\n", MAIL_OK, RCPT_OK, DATA_GO, QUEUED, BYE],
        fsm_config(False, 1, 1))
    s["client_fsm/all_rcpts_rejected_rset"] = fsm_seed(
        [BANNER, EHLO_PLAIN, MAIL_OK, RCPT_UNKNOWN, b"250 2.0.0 Ok\r\n", BYE],
        fsm_config(False, 1, 1))
    s["client_fsm/421_mid_transaction"] = fsm_seed(
        [BANNER, EHLO_NO_TLS,
         MAIL_OK + b"421 4.7.0 Try again later, closing connection.\r\n"],
        fsm_config(True, 1, 3))
    s["client_fsm/bdat_bytewise"] = fsm_seed(
        [BANNER, EHLO_BDAT, MAIL_OK + RCPT_OK, b"250 2.0.0 OK 1700000000\r\n",
         BYE], fsm_config(True, 1, 1), bytewise=True)
    s["client_fsm/starttls_then_two_txns"] = fsm_seed(
        [BANNER, EHLO_POSTFIX, TLS_GO, TLS_OK, EHLO_NO_TLS,
         MAIL_OK + RCPT_OK + DATA_GO, QUEUED,
         MAIL_OK + RCPT_UNKNOWN + DATA_GO, b"554 5.5.1 No valid recipients\r\n",
         BYE], fsm_config(True, 2, 1))
    s["client_fsm/starttls_handshake_fails"] = fsm_seed(
        [BANNER, EHLO_POSTFIX, TLS_GO, TLS_FAIL], fsm_config(True, 1, 1, tls=2))
    s["client_fsm/timeout_after_banner"] = (
        BANNER + bytes([0xF0, len(BANNER)]) + fsm_config(True, 1, 1))

    # render: from \0 subject \0 html \0 text \0 header \0 raw-flag \0 values.
    s["render/multipart"] = (
        b"Ann Example <ann@example.com>\0Hello {{name}}\0"
        b"<p>Hi {{name}} &amp; {{{raw}}}</p>\0Hi {{name}},\r\n.\r\nbye\0"
        b"campaign-7\0\0Ann\0<b>bold</b>")
    s["render/utf8_subject"] = (
        "Zo\u00eb <zoe@example.com>\0Gr\u00fc\u00dfe {{first}} \u20ac\0\0"
        "Text only for {{email}}\0v\0\0Zo\u00eb").encode()
    s["render/raw"] = (b"a@b.example\0s\0\0\0\0raw\0"
                       b"Subject: raw\r\n\r\n.dot line\nbare LF\r\nend")
    s["render/long_line"] = (b"x@y.example\0long\0\0" + b"word " * 300 +
                             b"\0h\0\0")

    # dns_message: responses as dnsmasq sends them.
    q = dns_name("example.com")
    s["dns_message/mx"] = (
        dns_header(0xABCD, 0x8180, 1, 1, 0, 1) + q + struct.pack(">HH", 15, 1) +
        b"\xc0\x0c" + struct.pack(">HHIH", 15, 1, 300, 8) +
        struct.pack(">H", 10) + b"\x03mx1\xc0\x0c" +
        b"\xc0\x2b" + struct.pack(">HHIH", 1, 1, 100, 4) + bytes([127, 0, 0, 1]))
    s["dns_message/null_mx"] = (
        dns_header(7, 0x8180, 1, 1, 0, 0) + q + struct.pack(">HH", 15, 1) +
        b"\xc0\x0c" + struct.pack(">HHIH", 15, 1, 60, 3) + b"\x00\x00\x00")
    s["dns_message/nxdomain"] = (
        dns_header(9, 0x8183, 1, 0, 0, 0) + dns_name("nope.example") +
        struct.pack(">HH", 15, 1))
    s["dns_message/cname_aaaa"] = (
        dns_header(1, 0x8180, 1, 2, 0, 0) + dns_name("a.test") +
        struct.pack(">HH", 28, 1) +
        b"\xc0\x0c" + struct.pack(">HHIH", 5, 1, 60, 4) + b"\x01b\xc0\x0e" +
        b"\xc0\x24" + struct.pack(">HHIH", 28, 1, 60, 16) + bytes(range(16)))
    return s


def main():
    for name, data in sorted(seeds().items()):
        path = os.path.join(HERE, "corpus", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        print(f"{len(data):6d} {os.path.relpath(path, HERE)}")


if __name__ == "__main__":
    main()
