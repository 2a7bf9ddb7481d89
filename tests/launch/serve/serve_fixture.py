"""Starts `tess serve` for a test and stops it the way an operator would.

Used by the client checks in this folder (each is a script run by
tests/launch/test_serve.cpp): `with Server(tess, model, ...) as s:` starts
the server on a free port (--port 0), waits for its "listening on" line and
gives its base URL; leaving the block sends SIGTERM and checks that the server
exited 0 (it finishes what it accepted first).
"""
import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback


class Server:
    def __init__(self, tess, model, *extra, name=None, timeout=120):
        self.cmd = [tess, "serve", "--model", str(model), "--port", "0", *map(str, extra)]
        if name:
            self.cmd += ["--name", name]
        self.timeout = timeout
        self.proc = None
        self.url = None
        self.model_id = name or str(model)
        self.log = []

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.log.append(line)
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                # Keep draining the log so the server never blocks on a full pipe.
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.proc.kill()
        raise RuntimeError("tess serve did not start:\n" + "".join(self.log))

    def _drain(self):
        for line in self.proc.stdout:
            self.log.append(line)

    def stop(self):
        """SIGTERM, then the exit code (the server drains first)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RuntimeError("tess serve did not exit within %ss of SIGTERM" % self.timeout)

    def __exit__(self, kind, value, tb):
        code = self.stop()
        if kind is None and code != 0:
            sys.stdout.write("".join(self.log))
            raise RuntimeError("tess serve exited %d after SIGTERM (expected 0)" % code)
        return False


def check_args(doc, extra=None):
    """The command line every check takes: --tess BIN --model DIR --out DIR
    (created), plus what `extra(parser)` adds."""
    ap = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    ap.add_argument("--tess", required=True, help="the tess binary")
    ap.add_argument("--model", required=True, help="a diffusion model directory")
    ap.add_argument("--out", required=True, help="where the check writes what it keeps")
    if extra:
        extra(ap)
    args = ap.parse_args()
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    return args


def check(condition, message):
    """A failed check ends the script with exit code 1 and the message."""
    if not condition:
        print("FAILED: " + message, flush=True)
        sys.exit(1)


@contextlib.contextmanager
def failures_of(errors, what=""):
    """One of `errors` raised inside the block (a client or server error the
    checks did not expect) fails the check with its traceback, `what: Type: message`."""
    try:
        yield
    except errors as e:
        traceback.print_exc()
        check(False, "%s%s: %s" % (what + ": " if what else "", type(e).__name__, e))
