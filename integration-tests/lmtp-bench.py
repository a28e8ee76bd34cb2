#!/usr/bin/env python3
"""LMTP delivery throughput, side by side: messages/s delivered to each target on 1 and 8
connections, with 1 and 10 recipients per message (users bench0..bench9, which both servers
must have); with --attachment-kb N, each message carries an attachment of its own of N KB. Every message is answered per recipient; any reply but 250 is counted as an error.

    lmtp-bench.py --target strata=127.0.0.1:10024 --target dovecot=127.0.0.1:10144 [--messages 400]

The targets are measured alternately, configuration by configuration, so that a noisy machine
weighs on both alike. Prints a markdown table.
"""

import argparse
import base64
import os
import socket
import threading
import time


ATTACHMENT_KB = 0


def message(i: int) -> bytes:
    body = "".join(f"line {j} of a message of about four kilobytes, number {i}\r\n" for j in range(70))
    head = (
        f"From: sender{i}@remote.example\r\nTo: bench@localhost\r\n"
        f"Subject: delivery {i}\r\nMessage-ID: <{i}.{time.time_ns()}@remote.example>\r\n"
    )
    if not ATTACHMENT_KB:
        return f"{head}\r\n{body}".encode()
    # An attachment of its own per message (random, so nothing but fan-out repeats it).
    raw = base64.encodebytes(os.urandom(ATTACHMENT_KB * 768)).decode().replace("\n", "\r\n")
    return (
        f"{head}MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b{i}\r\n\r\n"
        f"--b{i}\r\nContent-Type: text/plain\r\n\r\n{body}\r\n"
        f"--b{i}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        f"{raw}--b{i}--\r\n"
    ).encode()


class Lmtp:
    """A minimal LMTP client: smtplib's reads one reply after DATA, where LMTP sends one per
    recipient (RFC 2033 4.2)."""

    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port))
        self.file = self.sock.makefile("rb")
        self.reply()
        self.cmd(b"LHLO bench.example")

    def reply(self) -> bytes:
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            if line[3:4] != b"-":
                return line

    def cmd(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def send(self, sender: str, to: list, data: bytes) -> int:
        """Pipelined MAIL, RCPTs and DATA; returns how many recipients did not get a 250."""
        head = f"MAIL FROM:<{sender}>\r\n" + "".join(f"RCPT TO:<{t}>\r\n" for t in to) + "DATA\r\n"
        self.sock.sendall(head.encode())
        bad = 0
        for _ in range(1 + len(to)):
            if not self.reply().startswith(b"250"):
                bad += 1
        if not self.reply().startswith(b"354"):
            raise RuntimeError("DATA refused")
        body = data.replace(b"\r\n.", b"\r\n..")
        self.sock.sendall(body + b"\r\n.\r\n")
        for _ in to:
            if not self.reply().startswith(b"250"):
                bad += 1
        return bad

    def quit(self) -> None:
        self.cmd(b"QUIT")
        self.sock.close()


def deliver(host: str, port: int, count: int, rcpts: int, errors: list) -> None:
    c = Lmtp(host, port)
    to = [f"bench{k}@localhost" for k in range(rcpts)]
    for i in range(count):
        bad = c.send("sender@remote.example", to, message(i))
        if bad:
            errors.append(bad)
    c.quit()


def run(host: str, port: int, messages: int, conns: int, rcpts: int):
    errors: list = []
    per = messages // conns
    threads = [threading.Thread(target=deliver, args=(host, port, per, rcpts, errors)) for _ in range(conns)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - start
    return per * conns / took, len(errors)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", action="append", required=True, help="NAME=HOST:PORT")
    ap.add_argument("--messages", type=int, default=400, help="messages per configuration")
    ap.add_argument("--attachment-kb", type=int, default=0,
                    help="give each message a base64 attachment of about this many KB")
    a = ap.parse_args()
    global ATTACHMENT_KB
    ATTACHMENT_KB = a.attachment_kb
    targets = []
    for t in a.target:
        name, addr = t.split("=", 1)
        host, port = addr.rsplit(":", 1)
        targets.append((name, host, int(port)))
    print("| connections | recipients | " + " | ".join(f"{n} msg/s" for n, _, _ in targets) + " | ratio |")
    print("|---:|---:|" + "---:|" * len(targets) + "---:|")
    for conns in (1, 8):
        for rcpts in (1, 10):
            rates = []
            for name, host, port in targets:
                rate, errs = run(host, port, a.messages, conns, rcpts)
                if errs:
                    raise SystemExit(f"{name}: {errs} deliveries failed")
                rates.append(rate)
            ratio = rates[0] / rates[1] if len(rates) > 1 else 1.0
            print(f"| {conns} | {rcpts} | " + " | ".join(f"{r:.0f}" for r in rates) + f" | {ratio:.2f} |")


if __name__ == "__main__":
    main()
