#!/usr/bin/env python3
"""SMTP sink standing in for Mailpit in the compose smoke: accepts every
message on 0.0.0.0:1025 (no TLS, no auth, never relays) and keeps it in
memory; Mailpit's API on 0.0.0.0:8025 lists them:

    GET /api/v1/messages   {"total": N, "messages": [{"ID", "From", "To", "Subject", "Created"}]}

Development only.
"""
import email
import email.policy
import json
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
messages = []


class Smtp(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 wardline-smoke-mail-sink ESMTP")
        sender, rcpts = "", []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            upper = cmd.upper()
            if upper.startswith("EHLO"):
                self.wfile.write(b"250-wardline-smoke-mail-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
            elif upper.startswith("HELO"):
                self.reply("250 wardline-smoke-mail-sink")
            elif upper.startswith("MAIL FROM:"):
                sender, rcpts = cmd[10:].strip().split(" ")[0].strip("<>"), []
                self.reply("250 OK")
            elif upper.startswith("RCPT TO:"):
                rcpts.append(cmd[8:].strip().split(" ")[0].strip("<>"))
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
                msg = email.message_from_bytes(b"".join(data), policy=email.policy.default)
                with lock:
                    mid = str(len(messages) + 1)
                    messages.append({
                        "ID": mid,
                        "From": {"Address": sender},
                        "To": [{"Address": r} for r in rcpts],
                        "Subject": str(msg.get("Subject", "")),
                        "Created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    })
                print("mail %s: %d recipient(s)" % (mid, len(rcpts)), flush=True)
                self.reply("250 OK queued as " + mid)
            elif upper in ("RSET", "NOOP"):
                self.reply("250 OK")
            elif upper == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 command not implemented")


class Api(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0] not in ("/api/v1/messages", "/livez", "/readyz"):
            self.send_error(404)
            return
        with lock:
            body = {"total": len(messages), "messages": list(reversed(messages))}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class SmtpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    threading.Thread(target=SmtpServer(("0.0.0.0", 1025), Smtp).serve_forever, daemon=True).start()
    print("mail sink: SMTP on 0.0.0.0:1025, API on 0.0.0.0:8025", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 8025), Api).serve_forever()
