#!/usr/bin/env python3
"""`tess serve` under bad input, over raw HTTP.

    python3 bad_input_check.py --tess BIN --model DIR --out DIR

Each bad request (malformed JSON, a 10 MB body, max_tokens -1 and 0, an
unknown model, invalid UTF-8, a prompt longer than the context, messages not
ending with a user turn, wrong types, an unknown parameter, GET on a POST
endpoint, an unknown path, ...) must get its 4xx with an OpenAI error object
whose message is clear (names the field where there is one); after each,
GET /health is 200 and a normal request is still answered. Then a client that
disconnects from a long stream_steps stream must free its slot: /health
shows running 0 again within a few seconds.
Exit 0 when everything holds, else "FAILED: ..." and exit 1.
"""
import json
import os
import socket
import sys
import time
from urllib.parse import urlparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_fixture import Server, check, check_args, failures_of  # noqa: E402

STEPS = 4
MAX_TOKENS = 8


def log(msg):
    print(msg, flush=True)


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "%d %s" % (self.status, self.body[:400])


def recv_response(sock):
    """Reads one HTTP/1.1 response (Content-Length or close-delimited)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    check(lines and lines[0].startswith("HTTP/1."), "not an HTTP response: %r" % data[:200])
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(body) < n:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        body = body[:n]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        raw = body
        body = b""
        while True:
            while b"\r\n" not in raw:
                chunk = sock.recv(65536)
                check(chunk, "chunked body ended early")
                raw += chunk
            size_line, _, raw = raw.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(raw) < size + 2:
                chunk = sock.recv(65536)
                check(chunk, "chunked body ended early")
                raw += chunk
            if size == 0:
                break
            body += raw[:size]
            raw = raw[size + 2:]
    else:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return Response(status, headers, body)


def request(url, method, path, body=None, headers=None, timeout=60):
    """One request on a fresh connection (Connection: close); body is bytes."""
    u = urlparse(url)
    sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
    try:
        hdr = {"Host": "%s:%d" % (u.hostname, u.port), "Connection": "close"}
        if body is not None:
            hdr["Content-Type"] = "application/json"
            hdr["Content-Length"] = str(len(body))
        hdr.update(headers or {})
        head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % kv for kv in hdr.items()) + "\r\n"
        sock.sendall(head.encode("latin-1"))
        send_error = None
        if body:
            try:
                for i in range(0, len(body), 1 << 16):
                    sock.sendall(body[i:i + (1 << 16)])
            except (BrokenPipeError, ConnectionResetError) as e:
                send_error = e  # the server answered early and closed; read its answer
        try:
            return recv_response(sock)
        except ConnectionResetError as e:
            check(False, "%s %s: connection reset without a response (send error: %r): %r"
                  % (method, path, send_error, e))
    finally:
        sock.close()


def post_json(url, path, obj):
    return request(url, "POST", path, json.dumps(obj).encode("utf-8"))


def chat_body(model, content="Compute the sum of 2 and 3.", **kw):
    b = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": MAX_TOKENS,
         "steps": STEPS, "seed": 1}
    b.update(kw)
    return b


def still_serving(s, after):
    h = request(s.url, "GET", "/health")
    check(h.status == 200, "after %s: GET /health -> %r" % (after, h))
    check(h.json().get("status") == "ok", "after %s: /health %r" % (after, h.body))
    r = post_json(s.url, "/v1/chat/completions", chat_body(s.model_id))
    check(r.status == 200, "after %s: a normal request -> %r" % (after, r))
    check(isinstance(r.json()["choices"][0]["message"]["content"], str), "after %s: no content: %r" % (after, r))


def expect_error(s, what, resp, status, names=None, words=(), code=None):
    log("%-34s -> %d %s" % (what, resp.status, resp.body[:240].decode("utf-8", "replace")))
    check(resp.status == status, "%s: status %d, expected %d: %r" % (what, resp.status, status, resp))
    check("json" in resp.headers.get("content-type", ""), "%s: content-type %r, expected JSON"
          % (what, resp.headers.get("content-type")))
    try:
        err = resp.json()["error"]
    except (ValueError, KeyError, TypeError):
        check(False, "%s: the body is not an OpenAI error object: %r" % (what, resp.body[:400]))
    msg = err.get("message")
    check(isinstance(msg, str) and len(msg) >= 8, "%s: no clear error message: %r" % (what, err))
    check(isinstance(err.get("type"), str) and err["type"], "%s: error without a type: %r" % (what, err))
    check("param" in err and "code" in err, "%s: error object lacks param/code: %r" % (what, err))
    if names:
        check(names in msg or err.get("param") == names,
              "%s: the error names neither in message nor param the field %r: %r" % (what, names, err))
    for w in words:
        check(w.lower() in msg.lower(), "%s: the message does not mention %r: %r" % (what, w, msg))
    if code:
        check(err.get("code") == code, "%s: code %r, expected %r" % (what, err.get("code"), code))
    still_serving(s, what)


def bad_input_checks(s):
    chat_path, comp_path = "/v1/chat/completions", "/v1/completions"
    m = s.model_id
    still_serving(s, "start")

    expect_error(s, "malformed JSON", request(s.url, "POST", chat_path, b'{"model": "x", "messages": [ '), 400)
    expect_error(s, "JSON not an object", request(s.url, "POST", chat_path, b'[1, 2, 3]'), 400)
    big = json.dumps(chat_body(m, content="a " * (5 * 1024 * 1024))).encode()
    expect_error(s, "10 MB body", request(s.url, "POST", chat_path, big), 413)
    expect_error(s, "max_tokens -1", post_json(s.url, chat_path, chat_body(m, max_tokens=-1)), 400, "max_tokens")
    expect_error(s, "max_tokens 0", post_json(s.url, chat_path, chat_body(m, max_tokens=0)), 400, "max_tokens")
    expect_error(s, "max_tokens 10^6", post_json(s.url, chat_path, chat_body(m, max_tokens=1000000)), 400,
                 "max_tokens")
    expect_error(s, "unknown model", post_json(s.url, chat_path, chat_body("no-such-model")), 404,
                 code="model_not_found")
    nomodel = chat_body(m)
    del nomodel["model"]
    expect_error(s, "missing model", post_json(s.url, chat_path, nomodel), 400, "model")
    bad_utf8 = b'{"model": ' + json.dumps(m).encode() + b', "prompt": "caf\xc3\x28 \xff\xfe", "max_tokens": 4}'
    expect_error(s, "invalid UTF-8 (completions)", request(s.url, "POST", comp_path, bad_utf8), 400,
                 words=("utf",))
    bad_utf8 = (b'{"model": ' + json.dumps(m).encode()
                + b', "messages": [{"role": "user", "content": "\xc0\xaf\xed\xa0\x80"}], "max_tokens": 4}')
    expect_error(s, "invalid UTF-8 (chat)", request(s.url, "POST", chat_path, bad_utf8), 400, words=("utf",))
    long_prompt = " ".join("word%d" % i for i in range(5000))
    r = post_json(s.url, comp_path, {"model": m, "prompt": long_prompt, "max_tokens": 4, "steps": STEPS})
    expect_error(s, "prompt longer than the context", r, 400, words=("context",))
    r = post_json(s.url, chat_path, chat_body(m, content=long_prompt))
    expect_error(s, "chat prompt longer than the context", r, 400, words=("context",))
    r = post_json(s.url, chat_path, {"model": m, "max_tokens": 4, "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    expect_error(s, "messages ending with assistant", r, 400, "messages")
    r = post_json(s.url, chat_path, {"model": m, "max_tokens": 4, "messages": []})
    expect_error(s, "empty messages", r, 400, "messages")
    r = post_json(s.url, chat_path, {"model": m, "max_tokens": 4, "messages": [{"role": "wizard", "content": "x"}]})
    expect_error(s, "unknown role", r, 400, "messages")
    expect_error(s, "temperature \"hot\"", post_json(s.url, chat_path, chat_body(m, temperature="hot")), 400,
                 "temperature")
    expect_error(s, "temperature 5", post_json(s.url, chat_path, chat_body(m, temperature=5)), 400, "temperature")
    expect_error(s, "top_p 1.5", post_json(s.url, chat_path, chat_body(m, top_p=1.5)), 400, "top_p")
    expect_error(s, "steps \"many\"", post_json(s.url, chat_path, chat_body(m, steps="many")), 400, "steps")
    expect_error(s, "seed -3", post_json(s.url, chat_path, chat_body(m, seed=-3)), 400, "seed")
    expect_error(s, "n 0", post_json(s.url, chat_path, chat_body(m, n=0)), 400, "n")
    expect_error(s, "stop: 5 strings", post_json(s.url, chat_path, chat_body(m, stop=["a", "b", "c", "d", "e"])),
                 400, "stop")
    expect_error(s, "unknown parameter", post_json(s.url, chat_path, chat_body(m, frobnicate=True)), 400,
                 "frobnicate", words=("Unrecognized request argument supplied: frobnicate",))
    expect_error(s, "stream_steps without stream", post_json(s.url, chat_path, chat_body(m, stream_steps=True)),
                 400, "stream_steps")
    expect_error(s, "prompt of two strings", post_json(s.url, comp_path, {"model": m, "prompt": ["a", "b"],
                                                                          "max_tokens": 4}), 400, "prompt")
    expect_error(s, "GET on a POST endpoint", request(s.url, "GET", chat_path), 405)
    expect_error(s, "unknown path", request(s.url, "GET", "/v1/no-such-endpoint"), 404)
    expect_error(s, "POST to an unknown path", post_json(s.url, "/v2/chat", chat_body(m)), 404)


def open_stream(url, body):
    """Sends a streaming request; returns the socket and the first complete SSE event."""
    u = urlparse(url)
    sock = socket.create_connection((u.hostname, u.port), timeout=60)
    raw = json.dumps(body).encode()
    head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (u.hostname, u.port, len(raw)))
    sock.sendall(head.encode() + raw)
    data = b""
    while True:
        chunk = sock.recv(65536)
        check(chunk, "the stream ended before its first event: %r" % data[:400])
        data += chunk
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            status = data.split(b"\r\n", 1)[0]
            check(b" 200" in status, "streaming request: %r" % data[:400])
            rest = data[head_end + 4:]
            i = rest.find(b"data: ")
            if i >= 0 and b"\n\n" in rest[i:]:
                event = rest[i + 6:rest.index(b"\n\n", i)]
                return sock, json.loads(event.split(b"\r\n")[0])  # tolerate chunk framing after the event


def health(s):
    r = request(s.url, "GET", "/health")
    check(r.status == 200, "GET /health -> %r" % r)
    return r.json()


def disconnect_check(s):
    m = s.model_id
    # Calibrate the per-step time of a stream_steps request on this machine.
    t0 = time.time()
    r = post_json(s.url, "/v1/chat/completions", chat_body(m, steps=100, max_tokens=16, stream=True,
                                                            stream_steps=True))
    check(r.status == 200, "calibration stream: %r" % r)
    per_step = max((time.time() - t0) / 100, 1e-5)
    steps = int(min(100000, max(200, 20.0 / per_step)))  # about 20 s if the slot were never freed
    log("disconnect: %.2f ms/step -> %d steps" % (per_step * 1e3, steps))

    sock, event = open_stream(s.url, chat_body(m, steps=steps, max_tokens=16, stream=True, stream_steps=True))
    check("tess_step" in event, "first event of a stream_steps stream has no tess_step: %r" % event)
    h = health(s)
    log("disconnect: first event step %s; health while streaming %s" % (event["tess_step"].get("step"), h))
    check(h["running"] >= 1, "/health shows running %s while a stream is open" % h["running"])
    sock.close()
    t_close = time.time()
    deadline = t_close + 5
    while time.time() < deadline:
        h = health(s)
        if h["running"] == 0 and h["waiting"] == 0:
            break
        time.sleep(0.05)
    log("disconnect: health %.2f s after closing: %s" % (time.time() - t_close, h))
    check(h["running"] == 0 and h["waiting"] == 0,
          "a client that disconnected still holds its slot 5 s later: /health %s" % h)
    still_serving(s, "client disconnect")


def main():
    args = check_args(__doc__)
    t0 = time.time()
    with failures_of((OSError, ValueError, KeyError, RuntimeError)):
        with Server(args.tess, args.model) as s:
            log("server %s model %s" % (s.url, s.model_id))
            bad_input_checks(s)
            disconnect_check(s)
    log("bad input check passed (%.1f s)" % (time.time() - t0))


if __name__ == "__main__":
    main()
