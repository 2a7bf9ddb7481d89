"""A serve command a user is told to try (the quickstart's last lines) works:
run it (on a free port instead of 8000), get the page, ask the official openai
client for a chat completion (guided when the command loads a reward model)
and a raw completion, stop it with SIGTERM (exit 0).

python3 smoke_check.py --command "TESS serve --model DIR ... --port 8000"
"""
import argparse
import os
import shlex
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_fixture import Server, check  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--command", required=True)
    a = ap.parse_args()
    argv = shlex.split(a.command)
    check("serve" in argv and "--port" in argv, "not a tess serve command: " + a.command)
    argv[argv.index("--port") + 1] = "0"
    model = argv[argv.index("--model") + 1]
    server = Server(argv[0], model)
    server.cmd = argv
    with server:
        page = urllib.request.urlopen(server.url + "/", timeout=30).read().decode()
        check("<html" in page and "tess" in page, "GET / is not the page")
        import openai
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        extra = {"steps": 4}
        if "--reward-model" in argv:
            extra["guidance_scale"] = 1.0
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "What is 2 + 3?"}],
                                           max_tokens=8, seed=1, extra_body=extra)
        check(r.choices[0].finish_reason in ("stop", "length"), "no finish reason")
        check(r.usage.prompt_tokens > 0, "no usage")
        c = client.completions.create(model=model, prompt="The answer is", max_tokens=8, seed=1,
                                      extra_body={"steps": 4})
        check(c.choices[0].finish_reason in ("stop", "length") and c.usage.prompt_tokens > 0, "raw completion")
        print("serve smoke: page served, chat completion %r (%s), completion %r"
              % (r.choices[0].message.content, "guided" if "guidance_scale" in extra else "unguided", c.choices[0].text))


if __name__ == "__main__":
    main()
