#!/usr/bin/env python3
"""A tiny local SMTP sink for scripts/demo.sh: accepts every message on
127.0.0.1 and writes it to a directory as an .eml file, so the emails
notification sends in the demo can be read. Development only: no TLS, no
auth, never relays anything.

    scripts/wardline-mail-sink.py PORT DIRECTORY
"""
import os
import socketserver
import sys
import time


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


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    os.makedirs(directory, exist_ok=True)
    with Server(("127.0.0.1", port), Session) as server:
        server.directory, server.count = directory, 0
        print("mail sink on 127.0.0.1:%d writing to %s" % (port, directory), flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
