#!/usr/bin/env python3
"""The README's main job: start `tritium serve` on the built-in demo model, show a request, stop.

    python tools/demo.py [--prompt TEXT] [--max-tokens N] [--model PATH]

Starts the server on a free loopback port (the model runs in the backend plugin process, placement in
the scheduler plugin), waits for /health, sends one OpenAI-style streaming completion and one chat
completion with the standard library's HTTP client (what `curl` would send), prints them, and shuts the
server down.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict) -> urllib.request.Request:
    return urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                  headers={"Content-Type": "application/json"})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--model", help="GGUF file or HF folder (default: the built-in demo model)")
    args = ap.parse_args()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "tritium.core.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if args.model:
        cmd += ["--model", args.model]
    print(f"$ {' '.join(cmd[2:])}", file=sys.stderr)
    server = subprocess.Popen(cmd, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 180  # first start compiles the numba kernels (cached afterwards)
        while True:
            if server.poll() is not None:
                print(f"error: the server exited with status {server.returncode}", file=sys.stderr)
                return 1
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                print("error: the server did not become healthy in 180 s", file=sys.stderr)
                return 1
            time.sleep(0.5)

        body = {"prompt": args.prompt, "max_tokens": args.max_tokens, "temperature": 0, "stream": True}
        print(f"\n$ curl {base}/v1/completions -d '{json.dumps(body)}'", file=sys.stderr)
        sys.stdout.write(args.prompt)
        with urllib.request.urlopen(_post(f"{base}/v1/completions", body), timeout=120) as r:
            for raw in r:
                line = raw.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("choices"):
                    sys.stdout.write(chunk["choices"][0].get("text", ""))
                    sys.stdout.flush()
        print()

        body = {"messages": [{"role": "user", "content": "Tell me about the king."}],
                "max_tokens": args.max_tokens, "temperature": 0.7, "seed": 1}
        print(f"\n$ curl {base}/v1/chat/completions -d '{json.dumps(body)}'", file=sys.stderr)
        with urllib.request.urlopen(_post(f"{base}/v1/chat/completions", body), timeout=120) as r:
            reply = json.loads(r.read())
        print(reply["choices"][0]["message"]["content"])
        print(f"usage: {reply['usage']}", file=sys.stderr)
        return 0
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
