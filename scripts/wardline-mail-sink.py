#!/usr/bin/env python3
"""A tiny local SMTP sink for scripts/demo.sh: accepts every message on
127.0.0.1 and writes it to a directory as an .eml file, so the emails
notification sends in the demo can be read. Development only: no TLS, no
auth, never relays anything.

    scripts/wardline-mail-sink.py PORT DIRECTORY [HOST [API_PORT]]

HOST (default 127.0.0.1) is the address to listen on. With API_PORT it
also answers Mailpit's message list on HOST:API_PORT, as the compose
smoke's stand-in for Mailpit (scripts/compose-smoke):

    GET /api/v1/messages   {"total": N, "messages": [{"ID", "From", "To", "Subject"}]}
"""
import email
import email.policy
import json
import os
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Session(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 wardline-mail-sink ESMTP")
        sender, rcpts = "", []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            upper = cmd.upper()
            if upper.startswith("EHLO"):
                self.wfile.write(b"250-wardline-mail-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
            elif upper.startswith("HELO"):
                self.reply("250 wardline-mail-sink")
            elif upper.startswith("MAIL FROM:"):
                sender, rcpts = cmd[10:].strip(), []
                self.reply("250 OK")
            elif upper.startswith("RCPT TO:"):
                rcpts.append(cmd[8:].strip())
                self.reply("250 OK")
            elif upper == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                data = []
                while True:
                    part = self.rfile.readline()
                    if not part:
                        return
                    if part in (b".\r\n", b".\n"):
                        break
                    data.append(part[1:] if part.startswith(b".") else part)
                name = "%d-%06d.eml" % (time.time(), self.server.count)
                self.server.count += 1
                with open(os.path.join(self.server.directory, name), "wb") as f:
                    f.write(b"".join(data))
                print("mail from %s to %s -> %s" % (sender, ", ".join(rcpts), name), flush=True)
                self.reply("250 OK queued as " + name)
            elif upper in ("RSET", "NOOP"):
                self.reply("250 OK")
            elif upper == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 command not implemented")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def addresses(header):
    return [{"Address": a.addr_spec} for a in getattr(header, "addresses", ())]


class Api(BaseHTTPRequestHandler):
    """Mailpit's GET /api/v1/messages over the .eml files, newest first."""

    def do_GET(self):
        if self.path.split("?")[0] != "/api/v1/messages":
            self.send_error(404)
            return
        directory = self.server.directory
        messages = []
        for name in sorted(os.listdir(directory), reverse=True):
            with open(os.path.join(directory, name), "rb") as f:
                msg = email.message_from_binary_file(f, policy=email.policy.default)
            messages.append({
                "ID": name,
                "From": (addresses(msg["From"]) or [{}])[0],
                "To": addresses(msg["To"]),
                "Subject": str(msg["Subject"] or ""),
            })
        body = json.dumps({"total": len(messages), "messages": messages}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    host = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    os.makedirs(directory, exist_ok=True)
    if len(sys.argv) > 4:
        api = ThreadingHTTPServer((host, int(sys.argv[4])), Api)
        api.directory = directory
        threading.Thread(target=api.serve_forever, daemon=True).start()
        print("mail API on %s:%s" % (host, sys.argv[4]), flush=True)
    with Server((host, port), Session) as server:
        server.directory, server.count = directory, 0
        print("mail sink on %s:%d writing to %s" % (host, port, directory), flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
