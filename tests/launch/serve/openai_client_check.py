#!/usr/bin/env python3
"""`tess serve` through the official `openai` Python client.

    python3 openai_client_check.py --tess BIN --model DIR --out DIR

Starts its own servers (serve_fixture.Server, --port 0) and checks, with
`openai.OpenAI(base_url=URL + "/v1", max_retries=0)`:
  * models.list() holds the served model id;
  * chat.completions.create: text, usage, finish_reason; the same seed gives
    the same text; a request without a seed returns the seed it drew and
    re-sending that seed reproduces the text;
  * completions.create with a raw prompt;
  * stream=True: the deltas join to the non-streamed text; include_usage
    yields a usage chunk;
  * stream_steps: per-step `tess_step` chunks (increasing step numbers,
    pieces join to the step's text, confidences in [0, 1]), then the same
    final text;
  * n=2: choices 0 and 1, choice 0 equal to the n=1 answer of the seed;
  * errors as the client's exception types: BadRequestError (max_tokens -1,
    an unknown parameter), NotFoundError (unknown model),
    AuthenticationError (--api-key server, wrong key; the right key works),
    RateLimitError / 429 + Retry-After (--max-batch 1 --max-queue 1 under
    concurrent slow requests, every accepted request answered);
  * `tess generate --seed 5 --steps 6 --length 12 --top-p 0.9` prints the
    same answer as the server's chat completion with those settings.
Exit 0 when everything holds, else "FAILED: ..." and exit 1.
"""
import json
import os
import subprocess
import sys
import threading
import time

import openai
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_fixture import Server, check, check_args, failures_of  # noqa: E402

PROMPT = "Compute the sum of 8476 and 66."
STEPS = 6
MAX_TOKENS = 12


def log(msg):
    print(msg, flush=True)


def client_for(url, key="unused"):
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


def extra(obj):
    """The fields of a response object the openai models do not declare."""
    e = getattr(obj, "model_extra", None)
    if e:
        return e
    return obj.to_dict() if hasattr(obj, "to_dict") else {}


def chat(client, model, prompt=PROMPT, seed=7, max_tokens=MAX_TOKENS, steps=STEPS, **kw):
    body = {"steps": steps}
    body.update(kw.pop("extra_body", {}))
    args = dict(model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
                extra_body=body)
    if seed is not None:
        args["seed"] = seed
    args.update(kw)
    return client.chat.completions.create(**args)


def expect_error(kind, fn, what, names=None):
    """fn() must raise openai.<kind>; with `names`, its message or param names it."""
    try:
        fn()
    except kind as e:
        body = e.body if isinstance(e.body, dict) else {}
        text = str(e) + " " + json.dumps(body)
        log("  %s -> %s %s" % (what, type(e).__name__, text[:300]))
        if names:
            check(names in str(body.get("message", "")) or body.get("param") == names,
                  "%s: the error does not name '%s': %s" % (what, names, text))
        return e
    except Exception as e:  # noqa: BLE001 - report the wrong type
        check(False, "%s: expected openai.%s, got %s: %s" % (what, kind.__name__, type(e).__name__, e))
    check(False, "%s: expected openai.%s, the request succeeded" % (what, kind.__name__))


def check_choice_text(resp, what, max_tokens):
    check(resp.choices and len(resp.choices) >= 1, "%s: no choices: %s" % (what, resp))
    c = resp.choices[0]
    text = c.message.content if hasattr(c, "message") else c.text
    check(isinstance(text, str), "%s: choice 0 has no text: %s" % (what, resp))
    check(c.finish_reason in ("stop", "length"), "%s: finish_reason %r not stop/length" % (what, c.finish_reason))
    u = resp.usage
    check(u is not None, "%s: no usage" % what)
    check(u.prompt_tokens > 0, "%s: usage.prompt_tokens = %s, expected > 0" % (what, u.prompt_tokens))
    check(0 <= u.completion_tokens <= max_tokens * len(resp.choices),
          "%s: usage.completion_tokens = %s, expected 0..%d" % (what, u.completion_tokens, max_tokens))
    check(u.total_tokens == u.prompt_tokens + u.completion_tokens,
          "%s: usage.total_tokens %s != %s + %s" % (what, u.total_tokens, u.prompt_tokens, u.completion_tokens))
    return text


def main_checks(args, s):
    client = client_for(s.url)
    mid = s.model_id

    # ---- models.list
    ids = [m.id for m in client.models.list().data]
    log("models.list: %s" % ids)
    check(mid in ids, "models.list() does not list %r: %s" % (mid, ids))

    # ---- chat completion, determinism
    r1 = chat(client, mid, seed=7)
    t1 = check_choice_text(r1, "chat", MAX_TOKENS)
    log("chat (seed 7): %r finish=%s usage=%s" % (t1, r1.choices[0].finish_reason, r1.usage))
    check(r1.object == "chat.completion", "chat: object %r" % r1.object)
    check(r1.model == mid, "chat: model %r, expected %r" % (r1.model, mid))
    check(r1.choices[0].message.role == "assistant", "chat: role %r" % r1.choices[0].message.role)
    check(extra(r1).get("seed") == 7, "chat: response seed %r, expected 7" % extra(r1).get("seed"))
    r2 = chat(client, mid, seed=7)
    check(r2.choices[0].message.content == t1,
          "same seed, different text: %r vs %r" % (t1, r2.choices[0].message.content))

    # No seed: the server draws one and returns it; that seed reproduces the text.
    r3 = chat(client, mid, seed=None)
    s3 = extra(r3).get("seed")
    check(isinstance(s3, int) and s3 >= 0, "chat without seed: response seed %r, expected an integer >= 0" % s3)
    r4 = chat(client, mid, seed=s3)
    check(r4.choices[0].message.content == r3.choices[0].message.content,
          "re-sending the returned seed %s gave %r, first %r" % (s3, r4.choices[0].message.content,
                                                                  r3.choices[0].message.content))

    # ---- completions with a raw prompt
    rc = client.completions.create(model=mid, prompt="The capital of France is", max_tokens=8, seed=3,
                                   extra_body={"steps": STEPS})
    tc = check_choice_text(rc, "completions", 8)
    check(rc.object == "text_completion", "completions: object %r" % rc.object)
    log("completions: %r finish=%s" % (tc, rc.choices[0].finish_reason))

    # ---- streaming
    deltas, finish, usage_chunks, roles = [], None, [], []
    for ch in chat(client, mid, seed=7, stream=True, stream_options={"include_usage": True}):
        if ch.usage is not None:
            usage_chunks.append(ch.usage)
        for c in ch.choices:
            check(c.index == 0, "stream: choice index %s" % c.index)
            if c.delta.role:
                roles.append(c.delta.role)
            if c.delta.content:
                deltas.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    streamed = "".join(deltas)
    log("stream: %r finish=%s usage=%s" % (streamed, finish, usage_chunks))
    check(streamed == t1, "streamed text %r != non-streamed %r" % (streamed, t1))
    check(finish in ("stop", "length"), "stream: finish_reason %r" % finish)
    check(roles == ["assistant"], "stream: delta roles %r, expected one 'assistant'" % roles)
    check(len(usage_chunks) == 1, "stream with include_usage: %d usage chunks, expected 1" % len(usage_chunks))
    check(usage_chunks[0].prompt_tokens == r1.usage.prompt_tokens
          and usage_chunks[0].completion_tokens == r1.usage.completion_tokens,
          "stream usage %s != non-streamed usage %s" % (usage_chunks[0], r1.usage))

    # ---- stream_steps
    steps_seen, deltas, finish, missing_done = [], [], None, []
    last_step_text = None
    for ch in chat(client, mid, seed=7, stream=True, extra_body={"stream_steps": True}):
        ts = extra(ch).get("tess_step")
        if ts is not None:
            check(ch.choices == [], "tess_step chunk with choices %s" % ch.choices)
            check(ts.get("steps") == STEPS, "tess_step.steps = %r, expected %d" % (ts.get("steps"), STEPS))
            steps_seen.append(ts["step"])
            for c in ts["choices"]:
                pieces, conf = c["pieces"], c["confidence"]
                check("".join(pieces) == c["text"],
                      "step %s: pieces %r do not join to text %r" % (ts["step"], pieces, c["text"]))
                check(all(isinstance(x, (int, float)) and 0.0 <= x <= 1.0 for x in conf),
                      "step %s: confidence outside [0,1]: %r" % (ts["step"], conf))
                check(len(conf) == len(pieces), "step %s: %d confidences for %d pieces"
                      % (ts["step"], len(conf), len(pieces)))
                if "done" not in c and not missing_done:
                    missing_done.append(ts["step"])
                    log("  note: tess_step choices carry no \"done\" field (the spec lists \"done\": false)")
                if c["index"] == 0:
                    last_step_text = c["text"]
            continue
        for c in ch.choices:
            if c.delta.content:
                deltas.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    log("stream_steps: steps %s, last step text %r, final %r" % (steps_seen, last_step_text, "".join(deltas)))
    check(len(steps_seen) >= 2, "stream_steps: %d tess_step chunks, expected >= 2" % len(steps_seen))
    check(all(a < b for a, b in zip(steps_seen, steps_seen[1:])), "step numbers not increasing: %s" % steps_seen)
    check(steps_seen[0] >= 1 and steps_seen[-1] <= STEPS, "step numbers outside 1..%d: %s" % (STEPS, steps_seen))
    check("".join(deltas) == t1, "stream_steps final text %r != non-streamed %r" % ("".join(deltas), t1))
    check(finish in ("stop", "length"), "stream_steps: finish_reason %r" % finish)

    # ---- the raw event stream: "data: JSON" events, then "data: [DONE]"
    body = {"model": mid, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS,
            "seed": 7, "steps": STEPS, "stream": True, "stream_options": {"include_usage": True}}
    with requests.post(s.url + "/v1/chat/completions", json=body, stream=True, timeout=60) as r:
        check(r.status_code == 200, "raw stream: %d %s" % (r.status_code, r.text[:300]))
        check(r.headers.get("content-type", "").startswith("text/event-stream"),
              "raw stream: content-type %r" % r.headers.get("content-type"))
        events = [ln for ln in r.iter_lines() if ln]
    check(all(ln.startswith(b"data: ") for ln in events), "raw stream: a line that is not 'data: ...': %r" % events)
    check(events and events[-1] == b"data: [DONE]", "raw stream does not end with 'data: [DONE]': %r" % events[-2:])
    parsed = [json.loads(ln[6:]) for ln in events[:-1]]
    check(all(e.get("object") == "chat.completion.chunk" for e in parsed), "raw stream: chunk objects %r"
          % [e.get("object") for e in parsed])
    check(parsed[-1].get("choices") == [] and "usage" in parsed[-1], "raw stream: the last chunk is not the usage "
          "chunk: %r" % parsed[-1])

    # ---- completions, streamed: the text chunks join to the non-streamed text
    rc2 = client.completions.create(model=mid, prompt="Compute the sum of 2 and 3.", max_tokens=8, seed=3,
                                    extra_body={"steps": STEPS})
    pieces, cfinish = [], None
    for ch in client.completions.create(model=mid, prompt="Compute the sum of 2 and 3.", max_tokens=8, seed=3,
                                        stream=True, extra_body={"steps": STEPS}):
        for c in ch.choices:
            pieces.append(c.text or "")
            cfinish = c.finish_reason or cfinish
    log("completions stream: %r (non-streamed %r)" % ("".join(pieces), rc2.choices[0].text))
    check("".join(pieces) == rc2.choices[0].text, "streamed completion %r != non-streamed %r"
          % ("".join(pieces), rc2.choices[0].text))
    check(cfinish == rc2.choices[0].finish_reason, "streamed completion finish_reason %r != %r"
          % (cfinish, rc2.choices[0].finish_reason))

    # ---- n = 2
    rn = chat(client, mid, seed=7, n=2)
    idx = [c.index for c in rn.choices]
    log("n=2: %s" % [(c.index, c.message.content) for c in rn.choices])
    check(sorted(idx) == [0, 1], "n=2: choice indices %s, expected [0, 1]" % idx)
    c0 = [c for c in rn.choices if c.index == 0][0]
    check(c0.message.content == t1, "n=2: choice 0 %r != the n=1 text %r (same seed)" % (c0.message.content, t1))
    check(rn.usage.completion_tokens <= 2 * MAX_TOKENS, "n=2: completion_tokens %s" % rn.usage.completion_tokens)

    # ---- errors
    expect_error(openai.BadRequestError, lambda: chat(client, mid, max_tokens=-1), "max_tokens -1", "max_tokens")
    expect_error(openai.BadRequestError, lambda: chat(client, mid, extra_body={"frobnicate": 1}),
                 "unknown parameter frobnicate", "frobnicate")
    e = expect_error(openai.NotFoundError, lambda: chat(client, "no-such-model"), "unknown model")
    code = e.body.get("code") if isinstance(e.body, dict) else None
    check(code == "model_not_found", "unknown model: error code %r, expected model_not_found" % code)

    # ---- tess generate gives the server's answer
    gen_out = os.path.join(args.out, "generate.jsonl")
    cmd = [args.tess, "generate", "--model", args.model, "--prompt", PROMPT, "--seed", "5", "--steps", str(STEPS),
           "--length", str(MAX_TOKENS), "--top-p", "0.9", "--temperature", "1", "--output", gen_out]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, "%s exited %d:\n%s%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    with open(gen_out) as f:
        gen_text = json.loads(f.readline())["output"]
    rg = chat(client, mid, seed=5, max_tokens=MAX_TOKENS, steps=STEPS, top_p=0.9, temperature=1)
    log("tess generate: %r; server: %r" % (gen_text, rg.choices[0].message.content))
    check(rg.choices[0].message.content == gen_text,
          "server text %r != `tess generate` text %r (seed 5, steps %d, length %d, top-p 0.9)"
          % (rg.choices[0].message.content, gen_text, STEPS, MAX_TOKENS))
    client.close()  # no idle keep-alive connection left for the shutdown to wait on


def api_key_checks(args):
    with Server(args.tess, args.model, "--api-key", "secret") as s:
        wrong = client_for(s.url, "wrong")
        expect_error(openai.AuthenticationError, lambda: wrong.models.list(), "models.list with a wrong key")
        expect_error(openai.AuthenticationError, lambda: chat(wrong, s.model_id), "chat with a wrong key")
        h = requests.get(s.url + "/health", timeout=10)
        check(h.status_code == 200, "GET /health needs no key, got %d" % h.status_code)
        r = requests.get(s.url + "/v1/models", timeout=10)
        check(r.status_code == 401, "GET /v1/models without a key: %d, expected 401" % r.status_code)
        right = client_for(s.url, "secret")
        check(s.model_id in [m.id for m in right.models.list().data], "models.list with the right key")
        t = check_choice_text(chat(right, s.model_id), "chat with the right key", MAX_TOKENS)
        log("api key: right key works: %r" % t)
        wrong.close()
        right.close()


def post_chat(url, model, steps, max_tokens=8, seed=1, timeout=120):
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
            "steps": steps, "seed": seed}
    return requests.post(url + "/v1/chat/completions", json=body, timeout=timeout)


def health(url):
    return requests.get(url + "/health", timeout=10).json()


def rate_limit_checks(args):
    with Server(args.tess, args.model, "--max-batch", "1", "--max-queue", "1") as s:
        # Calibrate: steps for a request of about 2 s on this machine.
        t0 = time.time()
        r = post_chat(s.url, s.model_id, 200)
        check(r.status_code == 200, "calibration request: %d %s" % (r.status_code, r.text))
        per_step = max((time.time() - t0) / 200, 1e-5)
        slow = int(min(100000, max(400, 2.0 / per_step)))
        log("rate limit: %.2f ms/step -> %d steps per slow request" % (per_step * 1e3, slow))

        # Round 1: 6 concurrent slow requests, max-batch 1, max-queue 1: one runs,
        # one waits, the others get 429 at once; /health never shows waiting > 1.
        n = 6
        results, sent, answered = [None] * n, [None] * n, [None] * n
        barrier = threading.Barrier(n + 1)

        def worker(i):
            barrier.wait()
            sent[i] = time.time()
            try:
                results[i] = post_chat(s.url, s.model_id, slow, seed=i)
            except Exception as e:  # noqa: BLE001
                results[i] = e
            answered[i] = time.time()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        barrier.wait()
        t_start = time.time()
        max_waiting = 0
        while any(t.is_alive() for t in threads) and time.time() < t_start + 150:
            max_waiting = max(max_waiting, health(s.url)["waiting"])
            time.sleep(0.01)
        for t in threads:
            t.join(timeout=1)
        codes = [x.status_code if isinstance(x, requests.Response) else repr(x) for x in results]
        spans = ["%.2f-%.2fs" % (a - t_start, b - t_start) if a and b else None for a, b in zip(sent, answered)]
        log("rate limit: %d concurrent requests -> %s (sent-answered %s); most waiting on /health: %d"
            % (n, codes, spans, max_waiting))
        for i, x in enumerate(results):
            check(isinstance(x, requests.Response), "concurrent request %d lost: %r" % (i, x))
            if x.status_code == 429:
                check(x.headers.get("Retry-After") is not None, "429 without a Retry-After header")
                err = x.json().get("error", {})
                check(err.get("type") == "rate_limit_error", "429 error type %r" % err.get("type"))
            else:
                check(x.status_code == 200, "concurrent request %d: %d %s" % (i, x.status_code, x.text[:300]))
                content = x.json()["choices"][0]["message"]["content"]
                check(isinstance(content, str), "concurrent request %d: no content" % i)
        check(codes.count(429) >= 1, "no request of %d got 429 with --max-batch 1 --max-queue 1: %s" % (n, codes))
        check(codes.count(200) >= 2, "fewer than 2 requests served (running + queued): %s" % codes)
        check(max_waiting <= 1, "/health showed %d requests waiting with --max-queue 1 (the queue bound does not "
              "hold under concurrent arrivals): %s, sent-answered %s" % (max_waiting, codes, spans))
        # (How many are accepted depends on when each reaches the server, which a
        # loaded 2-core machine does not keep in the order they were sent: the
        # bound checked is the queue's, through /health, above.)

        # Round 2: one running, one waiting; the client sees RateLimitError.
        holders = []
        for i in range(2):
            def hold(i=i):
                try:
                    holders.append(post_chat(s.url, s.model_id, slow, seed=10 + i))
                except Exception as e:  # noqa: BLE001
                    holders.append(e)

            t = threading.Thread(target=hold)
            t.start()
            deadline = time.time() + 10
            while time.time() < deadline:
                h = health(s.url)
                if h["running"] + h["waiting"] >= i + 1:
                    break
                time.sleep(0.02)
        h = health(s.url)
        log("rate limit round 2: health %s" % h)
        if h["running"] == 1 and h["waiting"] == 1:
            c = client_for(s.url)
            expect_error(openai.RateLimitError, lambda: chat(c, s.model_id), "client request with a full queue")
            c.close()
        else:
            log("  (the slow requests finished before the client request; RateLimitError not checked)")
        deadline = time.time() + 150
        while len(holders) < 2 and time.time() < deadline:
            time.sleep(0.05)
        check(len(holders) == 2 and all(isinstance(x, requests.Response) and x.status_code == 200 for x in holders),
              "queued requests not all answered: %s"
              % [(x.status_code, x.text[:200]) if isinstance(x, requests.Response) else repr(x) for x in holders])


def main():
    args = check_args(__doc__)
    t0 = time.time()
    with failures_of((openai.OpenAIError, requests.RequestException, RuntimeError, KeyError, ValueError)):
        with Server(args.tess, args.model) as s:
            log("server %s model %s" % (s.url, s.model_id))
            main_checks(args, s)
        api_key_checks(args)
        rate_limit_checks(args)
    log("openai client check passed (%.1f s)" % (time.time() - t0))


if __name__ == "__main__":
    main()
