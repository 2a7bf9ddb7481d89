"""SIGTERM drains `tess serve`: requests already accepted finish (the
streaming one to its [DONE]), new ones are refused (503 while the listener
is still open, or the connection is refused after), and the exit code is 0.

python3 shutdown_check.py --tess BIN --model DIR --out DIR
"""
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_fixture import Server, check, check_args  # noqa: E402


def post(url, body, timeout=120):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=timeout)


def main():
    a = check_args(__doc__)
    server = Server(a.tess, a.model, name="m")
    server.__enter__()
    body = {"model": "m", "messages": [{"role": "user", "content": "the cat"}], "max_tokens": 8, "seed": 1}
    events, plain = [], {}
    first_step = threading.Event()

    def streaming():
        with post(server.url + "/v1/chat/completions", dict(body, steps=60, stream=True, stream_steps=True)) as r:
            for line in r:
                line = line.decode().strip()
                if line.startswith("data: "):
                    events.append(line[6:])
                    first_step.set()

    def non_streaming():
        with post(server.url + "/v1/chat/completions", dict(body, steps=40, seed=2)) as r:
            plain["status"] = r.status
            plain["body"] = json.loads(r.read())

    threads = [threading.Thread(target=streaming), threading.Thread(target=non_streaming)]
    for t in threads:
        t.start()
    check(first_step.wait(60), "no denoising step arrived")
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    # A new request now: 503 (still listening, draining) or refused (listener closed).
    try:
        post(server.url + "/v1/chat/completions", dict(body, steps=2), timeout=10)
        check(False, "a request after SIGTERM was accepted")
    except urllib.error.HTTPError as e:
        check(e.code == 503, "after SIGTERM: HTTP %d, expected 503" % e.code)
        check("shutting down" in e.read().decode(), "the 503 does not say the server is shutting down")
    except (urllib.error.URLError, ConnectionError):
        pass
    for t in threads:
        t.join(120)
    check(events and events[-1] == "[DONE]", "the streaming request did not finish with [DONE]: %d events, last %s" % (len(events), events[-1][:200] if events else None))
    steps = [json.loads(e)["tess_step"]["step"] for e in events[:-1] if "tess_step" in e]
    check(steps == list(range(1, 61)), "the streaming request did not run all 60 steps: %s" % steps[-3:])
    check(plain.get("status") == 200 and plain["body"]["choices"][0]["steps"] == 40,
          "the waiting non-streaming request did not finish")
    code = server.proc.wait(60)
    check(code == 0, "exit code %d after SIGTERM" % code)
    print("shutdown: in-flight requests finished (60 steps streamed, 40 steps answered), new ones refused, exit 0")


if __name__ == "__main__":
    main()
