#!/usr/bin/env python3
"""A mock OpenAI-compatible API for slm's upstream tests (python3 standard library only).

    python3 upstream_mock.py [--port 0] [--host 127.0.0.1] [--tls-cert CERT.pem --tls-key KEY.pem]

Prints the port it listens on (one line), then serves until killed.

  POST /v1/chat/completions, /v1/completions   stream and non-stream; usage in a last chunk when
                                               stream_options.include_usage
  GET  /control/log      {"requests": [{"method","path","headers","body"}...]} (control calls excluded)
  POST /control/reset    forget the log and the fault queue
  POST /control/faults   {"faults": ["500", "ok", ...]}: each following API request takes the next one

A request's fault is its model name when that starts with "fault:" (e.g. "fault:500"), else the next
queued fault, else "ok". Faults:
  ok            normal answer
  500 / 503     error status with an OpenAI error body
  429:N         429 with Retry-After: N
  429date:N     429 with Retry-After as an HTTP date N seconds from now
  400           a client error with a message
  401echo       401 whose message echoes the Authorization header (a key leak the client must scrub)
  hang          read the request, never answer
  close         close the connection without answering
  break:N       stream N content chunks, then cut the connection (no end of chunked body)
  slow:MS       sleep MS milliseconds before every chunk
  sse_error     one content chunk, then an error event
  malformed     a chunk that is not JSON
  json          a non-streamed JSON answer even when a stream was asked for
  nodone        content chunks, then a clean end without finish_reason or [DONE]
  longline      2 MiB without a line break
  flood         64 KiB content chunks without end (until the client hangs up)
  crlf          CRLF line ends, comments and an event split across writes
  strict        400 for a request with stream_options, or with max_tokens (wants max_completion_tokens),
                like some OpenAI-compatible servers and OpenAI's reasoning models

The reply is deterministic: "Mock reply to: <last user message or prompt> — ünïcødé ✓", sent in
pieces of 4 characters (one piece = one completion token). max_tokens cuts it (finish_reason
length); a stop string cuts it before the stop (finish_reason stop). prompt_tokens is the number
of whitespace-separated words of the input.
"""
import argparse
import json
import select
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
LOG = []
FAULTS = []


def reply_text(body, chat):
    if chat:
        msgs = body.get("messages") or []
        last = ""
        for m in msgs:
            if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
                last = m["content"]
        return "Mock reply to: " + last + " — ünïcødé ✓"
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = " ".join(str(p) for p in prompt)
    return "Mock reply to: " + str(prompt or "") + " — ünïcødé ✓"


def prompt_words(body, chat):
    if chat:
        return sum(len(str(m.get("content", "")).split()) for m in body.get("messages") or [] if isinstance(m, dict))
    return len(str(body.get("prompt") or "").split())


def plan(body, chat):
    """The pieces to send and the finish reason, honouring stop and max_tokens."""
    text = reply_text(body, chat)
    finish = "stop"
    stops = body.get("stop")
    if isinstance(stops, str):
        stops = [stops]
    cut = len(text)
    for s in stops or []:
        if isinstance(s, str) and s and s in text:
            cut = min(cut, text.index(s))
    text = text[:cut]
    pieces = [text[i:i + 4] for i in range(0, len(text), 4)]
    mt = body.get("max_tokens", body.get("max_completion_tokens"))
    if isinstance(mt, int) and mt > 0 and len(pieces) > mt:
        pieces = pieces[:mt]
        finish = "length"
    return pieces, finish


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "upstream-mock/1"

    def log_message(self, fmt, *args):  # quiet
        pass

    # ---------- plumbing ----------
    def send_json(self, status, obj, extra=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def chunk(self, data):
        if isinstance(data, str):
            data = data.encode()
        if not data:
            return
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()

    def end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def cut(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        return raw

    # ---------- control ----------
    def do_GET(self):
        if self.path == "/control/log":
            with LOCK:
                self.send_json(200, {"requests": list(LOG)})
            return
        self.send_json(404, {"error": {"message": "not found: " + self.path}})

    def do_POST(self):
        raw = self.read_body()
        if self.path.startswith("/control/"):
            return self.control(raw)
        try:
            body = json.loads(raw.decode("utf-8"))
        except Exception:
            body = None
        with LOCK:
            LOG.append({"method": "POST", "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body if body is not None else raw.decode("utf-8", "replace")})
        if not isinstance(body, dict):
            return self.send_json(400, {"error": {"message": "body is not a JSON object", "type": "invalid_request_error"}})
        chat = self.path.endswith("/chat/completions")
        if not chat and not self.path.endswith("/completions"):
            return self.send_json(404, {"error": {"message": "unknown endpoint " + self.path}})
        model = str(body.get("model") or "")
        if model.startswith("fault:"):
            fault = model[len("fault:"):]
        else:
            with LOCK:
                fault = FAULTS.pop(0) if FAULTS else "ok"
        self.answer(body, chat, fault)

    def control(self, raw):
        if self.path == "/control/reset":
            with LOCK:
                LOG.clear()
                FAULTS.clear()
            return self.send_json(200, {"ok": True})
        if self.path == "/control/faults":
            try:
                faults = json.loads(raw.decode())["faults"]
                assert isinstance(faults, list)
            except Exception:
                return self.send_json(400, {"error": {"message": "expected {\"faults\": [...]}"}})
            with LOCK:
                FAULTS.extend(str(f) for f in faults)
            return self.send_json(200, {"ok": True, "queued": len(FAULTS)})
        self.send_json(404, {"error": {"message": "unknown control " + self.path}})

    # ---------- answers ----------
    def answer(self, body, chat, fault):
        kind, _, arg = fault.partition(":")
        if kind in ("500", "503"):
            return self.send_json(int(kind), {"error": {"message": "mock upstream failure %s" % kind, "type": "server_error"}})
        if kind == "429":
            return self.send_json(429, {"error": {"message": "mock rate limit", "type": "rate_limit_error"}},
                                  {"Retry-After": arg or "1"})
        if kind == "429date":  # Retry-After as an HTTP date, arg seconds from now (may be negative)
            when = self.date_time_string(time.time() + int(arg or "0"))
            return self.send_json(429, {"error": {"message": "mock rate limit", "type": "rate_limit_error"}},
                                  {"Retry-After": when})
        if kind == "400":
            return self.send_json(400, {"error": {"message": "mock: this model's maximum context length is 10 tokens",
                                                  "type": "invalid_request_error"}})
        if kind == "401echo":
            auth = self.headers.get("Authorization") or ""
            return self.send_json(401, {"error": {"message": "Incorrect API key provided: %s. Check it." % auth,
                                                  "type": "invalid_request_error"}})
        if kind == "hang":
            end = time.time() + 60
            while time.time() < end:  # until the client gives up
                r, _, _ = select.select([self.connection], [], [], 0.1)
                if r:
                    try:
                        if not self.connection.recv(1, socket.MSG_PEEK):
                            break
                    except OSError:
                        break
            self.close_connection = True
            return
        if kind == "close":
            return self.cut()
        if kind == "strict" and "stream_options" in body:
            return self.send_json(400, {"error": {"message": "Unrecognized request argument supplied: stream_options",
                                                  "type": "invalid_request_error"}})
        if kind == "strict" and "max_tokens" in body:
            return self.send_json(400, {"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with "
                                                  "this model. Use 'max_completion_tokens' instead.",
                                                  "type": "invalid_request_error", "param": "max_tokens"}})

        pieces, finish = plan(body, chat)
        usage = {"prompt_tokens": prompt_words(body, chat), "completion_tokens": len(pieces)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        model = body.get("model")
        if not body.get("stream") or kind == "json":
            text = "".join(pieces)
            if chat:
                obj = {"id": "chatcmpl-mock", "object": "chat.completion", "created": int(time.time()), "model": model,
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": finish}], "usage": usage}
            else:
                obj = {"id": "cmpl-mock", "object": "text_completion", "created": int(time.time()), "model": model,
                       "choices": [{"index": 0, "text": text, "finish_reason": finish}], "usage": usage}
            return self.send_json(200, obj)

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        eol = "\r\n" if kind == "crlf" else "\n"
        slow = int(arg) / 1000.0 if kind == "slow" and arg else 0

        def event(obj):
            if slow:
                time.sleep(slow)
            data = "data: " + json.dumps(obj, ensure_ascii=False) + eol + eol
            if kind == "crlf":  # split the event (even inside a CRLF) across two writes
                half = len(data) - 1
                self.chunk(": keep-alive" + eol + eol)
                self.chunk(data[:half])
                time.sleep(0.002)
                self.chunk(data[half:])
            else:
                self.chunk(data)

        def piece(i, text, fin=None):
            if chat:
                delta = {"content": text} if text is not None else {}
                if i == 0 and text is not None:
                    delta["role"] = "assistant"
                return {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": fin}]}
            return {"id": "cmpl-mock", "object": "text_completion", "created": 0, "model": model,
                    "choices": [{"index": 0, "text": text or "", "finish_reason": fin}]}

        try:
            if kind == "longline":
                self.chunk("data: {\"x\": \"" + "a" * (2 << 20))
                return self.cut()
            if kind == "flood":
                data = ("data: " + json.dumps(piece(1, "x" * 65536)) + eol + eol).encode()
                for _ in range(4096):  # 256 MiB at most
                    self.chunk(data)
                return self.cut()
            if kind == "malformed":
                self.chunk("data: {\"choices\": [ this is not json" + eol + eol)
                return self.cut()
            for i, p in enumerate(pieces):
                if kind == "break" and i == int(arg or 0):
                    return self.cut()
                event(piece(i, p))
                if kind == "sse_error":
                    self.chunk("event: error" + eol + "data: {\"error\": {\"message\": \"mock overloaded mid-stream\"}}"
                               + eol + eol)
                    self.end_chunks()
                    return
            if kind == "nodone":
                self.end_chunks()
                return
            event(piece(len(pieces), None, finish))
            so = body.get("stream_options")
            if isinstance(so, dict) and so.get("include_usage"):
                if chat:
                    event({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model,
                           "choices": [], "usage": usage})
                else:
                    event({"id": "cmpl-mock", "object": "text_completion", "created": 0, "model": model,
                           "choices": [], "usage": usage})
            self.chunk("data: [DONE]" + eol + eol)
            self.end_chunks()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default listen backlog (5) drops the SYNs of concurrent clients: 1 s stalls

    def handle_error(self, request, client_address):
        # clients that hang up (cut streams, timeouts, rejected certificates) are expected here
        if isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls-cert", help="serve https with this certificate (PEM)")
    ap.add_argument("--tls-key", help="the certificate's private key (PEM)")
    a = ap.parse_args()
    srv = Server((a.host, a.port), Handler)
    if a.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        # a client that rejects the certificate makes accept() fail: socketserver ignores that (OSError)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
