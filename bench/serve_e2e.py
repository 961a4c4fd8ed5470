"""End-to-end check of `kiln serve` (not in CI): start it on loopback with a character LSTM
and an iris tree, drive it with the official `openai` package (completions, chat, streaming,
images, auth), and, when Chromium is installed, load the playground in headless Chromium
through the DevTools protocol, generate text and a prediction with the keyboard and the
forms, and save screenshots (desktop and phone sized).

    pip install openai websocket-client      # apt-get install chromium for the browser part
    cargo build -p kiln-cli
    python3 bench/serve_e2e.py [--work /tmp/kiln-serve-e2e]

Prints one line per check and exits non-zero on the first failure.
"""

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_common import free_port, kiln_binary, models, start_server  # noqa: E402

KEY = "e2e-key"
# kiln's default text-to-image model folder (the one compiled into the binary), served by path.
IMAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "kiln-models", "assets", "default-image")
IMAGE_ID = "default-image"


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        raise SystemExit(1)


def http(base, path, body=None, key=KEY, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method="POST" if data else "GET")
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def openai_checks(base, lm_id, tree_id):
    client = openai.OpenAI(base_url=base + "/v1", api_key=KEY)
    ids = [m.id for m in client.models.list().data]
    check(ids == [lm_id, tree_id, IMAGE_ID], f"models.list -> {ids}")

    c = client.completions.create(model=lm_id, prompt="ROMEO:", max_tokens=60, temperature=0.8, seed=1)
    text = c.choices[0].text
    check(len(text) == 60 and c.usage.completion_tokens == 60, f"completions.create: {text!r}")
    again = client.completions.create(model=lm_id, prompt="ROMEO:", max_tokens=60, temperature=0.8, seed=1)
    check(again.choices[0].text == text, "same seed, same completion")

    stream = client.completions.create(model=lm_id, prompt="ROMEO:", max_tokens=60, temperature=0.8, seed=1, stream=True)
    pieces = [ch.choices[0].text for ch in stream]
    check("".join(pieces) == text and len(pieces) >= 60, f"streamed completion equals the whole one ({len(pieces)} chunks)")

    c = client.completions.create(model=lm_id, prompt="ROMEO:", max_tokens=200, temperature=0, stop=["\n\n"], n=2)
    check(len(c.choices) == 2 and all("\n\n" not in ch.text for ch in c.choices), f"n=2 with stop: finish {[ch.finish_reason for ch in c.choices]}")

    r = client.chat.completions.create(model=lm_id, messages=[{"role": "user", "content": "What is love?"}], max_tokens=80, seed=3)
    check(r.choices[0].message.role == "assistant", f"chat.completions.create: {r.choices[0].message.content!r}")
    stream = client.chat.completions.create(model=lm_id, messages=[{"role": "user", "content": "What is love?"}], max_tokens=80, seed=3, stream=True)
    deltas = [ch.choices[0].delta.content or "" for ch in stream]
    check("".join(deltas) == r.choices[0].message.content, f"streamed chat equals the whole one ({len(deltas)} chunks)")

    # The text-to-image model (kiln's default shapes folder, served from the repository).
    img = client.images.generate(model=IMAGE_ID, prompt="a large red circle in the center", n=2, response_format="b64_json", extra_body={"seed": 5})
    pngs = [base64.b64decode(d.b64_json) for d in img.data]
    check(len(pngs) == 2 and all(p.startswith(b"\x89PNG") for p in pngs), f"images.generate: {len(pngs)} PNGs of {len(pngs[0])} bytes")
    again = client.images.generate(model=IMAGE_ID, prompt="a large red circle in the center", n=2, response_format="b64_json", extra_body={"seed": 5})
    check([d.b64_json for d in again.data] == [d.b64_json for d in img.data], "same seed, same pictures")
    try:
        client.images.generate(model=IMAGE_ID, prompt="a purple dragon", n=1, response_format="b64_json")
        check(False, "an unknown word must fail")
    except openai.BadRequestError as e:
        check("dragon" in e.body["message"], f"images.generate with unknown words -> 400: {e.body['message'][:80]}...")
    try:
        client.images.generate(model=lm_id, prompt="a red circle", n=1, response_format="b64_json")
        check(False, "images.generate on a text model must fail")
    except openai.BadRequestError as e:
        check(e.body.get("param") == "model", f"images.generate on a text model -> 400: {e.body['message']}")
    try:
        client.images.generate(model="dalle-kiln", prompt="a red circle")
        check(False, "images.generate with an unknown model must fail")
    except openai.NotFoundError as e:
        check(e.body.get("code") == "model_not_found", f"images.generate unknown model -> 404: {e.body['message']}")

    for bad, what in [({"temperature": 5}, "temperature"), ({"max_tokens": 10**6}, "max_tokens")]:
        try:
            client.completions.create(model=lm_id, prompt="A", **bad)
            check(False, f"{what} out of range must fail")
        except openai.BadRequestError as e:
            check(e.body.get("param") == what, f"out-of-range {what} -> 400: {e.body['message']}")
    try:
        openai.OpenAI(base_url=base + "/v1", api_key="wrong").models.list()
        check(False, "a wrong key must fail")
    except openai.AuthenticationError:
        check(True, "wrong API key -> 401 AuthenticationError")


def raw_checks(base, tree_id):
    s, b = http(base, "/v1/predict", {"model": tree_id, "rows": [[5.1, 3.5, 1.4, 0.2], {"sepal length (cm)": 6.7, "sepal width (cm)": 3.0, "petal length (cm)": 5.2, "petal width (cm)": 2.3}]})
    v = json.loads(b)
    check(s == 200 and v["predictions"] == ["setosa", "virginica"], f"predict -> {v['predictions']} {v['probabilities']}")
    s, b = http(base, "/v1/completions", raw=b"x" * (5 << 20))
    check(s == 413, f"5 MiB body -> {s} {json.loads(b)['error']['code']}")
    s, b = http(base, "/v1/completions", raw=b"{oops")
    check(s == 400 and "error" in json.loads(b), "invalid JSON -> 400 error object")
    s, b = http(base, "/metrics")
    m = b.decode()
    tokens = [l for l in m.splitlines() if l.startswith("kiln_tokens_generated_total")]
    check(s == 200 and tokens, f"metrics: {tokens[0]}")


class Cdp:
    """The smallest DevTools-protocol client: one page, commands in order."""

    def __init__(self, ws_url):
        import websocket  # websocket-client

        self.ws = websocket.create_connection(ws_url, timeout=60)
        self.n = 0

    def __call__(self, method, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expr):
        r = self("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        return r.get("result", {}).get("value")

    def key(self, key, code, vk, modifiers=0, text=None):
        for t in ("keyDown", "keyUp"):
            p = dict(type=t, key=key, code=code, windowsVirtualKeyCode=vk, modifiers=modifiers)
            if text and t == "keyDown":
                p["text"] = text
            self("Input.dispatchKeyEvent", **p)

    def shot(self, path, width, height, mobile=False):
        self("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile)
        time.sleep(0.3)
        data = self("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        print(f"     screenshot {path}")


def wait(cdp, expr, what, seconds=60):
    t = time.time()
    while time.time() - t < seconds:
        v = cdp.js(expr)
        if v:
            return v
        time.sleep(0.2)
    check(False, "timed out waiting for " + what)


def browser_checks(base, shots):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("skip browser checks: no chromium (apt-get install chromium)")
        return
    port = free_port()
    profile = tempfile.mkdtemp()
    proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--remote-debugging-port={port}",
                             f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=1) as r:
                    pages = [p for p in json.load(r) if p["type"] == "page"]
                if pages:
                    break
            except OSError:
                time.sleep(0.2)
        cdp = Cdp(pages[0]["webSocketDebuggerUrl"])
        cdp("Page.enable")
        cdp("Runtime.enable")
        cdp("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
        cdp("Page.navigate", url=base + "/")
        wait(cdp, "document.readyState === 'complete'", "the page")
        # The key: typed into the key box, which reloads the model lists.
        cdp.js(f"const k = document.getElementById('apikey'); k.value = '{KEY}'; k.dispatchEvent(new Event('change')); true")
        wait(cdp, "document.getElementById('text-model').options.length > 0 && !document.getElementById('gen').disabled", "the model list")
        check("3 model(s)" in cdp.js("document.getElementById('models-status').textContent"), "playground lists the models")
        # Keyboard: Tab moves through the controls in order; Ctrl+Enter in the prompt generates.
        cdp.js("document.getElementById('apikey').focus(); true")
        order = []
        for _ in range(3):
            cdp.key("Tab", "Tab", 9)
            order.append(cdp.js("document.activeElement.id"))
        check(order == ["text-model", "prompt", "max-tokens"], f"Tab order {order}")
        cdp.js("const p = document.getElementById('prompt'); p.value = 'ROMEO:'; p.focus(); "
               "document.getElementById('max-tokens').value = 300; document.getElementById('seed').value = 7; true")
        cdp.key("Enter", "Enter", 13, modifiers=2, text="\r")  # Ctrl+Enter
        status = wait(cdp, "(s => s.includes('tokens/s') && s)(document.getElementById('text-status').textContent)", "streamed text")
        out = cdp.js("document.getElementById('text-out').textContent")
        check(out.startswith("ROMEO:") and len(out) > 200, f"streamed text in the page: {status}")
        # A prediction from a CSV row, sent with the form.
        cdp.js("document.getElementById('pred-row').value = '6.7, 3.0, 5.2, 2.3'; "
               "document.querySelector('#pred-form button').click(); true")
        pred = wait(cdp, "document.querySelector('#pred-out table') && document.querySelector('#pred-out').innerText", "a prediction")
        check("virginica" in pred, "prediction table: " + " | ".join(pred.split()))
        # Pictures from the image form.
        cdp.js("document.getElementById('img-n').value = 4; document.getElementById('img-seed').value = 3; "
               "document.querySelector('#img-form button').click(); true")
        shown = wait(cdp, "document.querySelectorAll('#img-out img').length", "the pictures")
        img_status = cdp.js("document.getElementById('img-status').textContent")
        check(shown == 4, f"image grid shows {shown} pictures: {img_status}")
        cdp.shot(os.path.join(shots, "playground-desktop.png"), 1280, 900)
        cdp.shot(os.path.join(shots, "playground-phone.png"), 390, 844, mobile=True)
        width = cdp.js("document.documentElement.scrollWidth")
        check(width <= 390, f"no horizontal scrolling on a phone-sized screen (page width {width})")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def shutdown_check(proc, base, lm_id):
    """SIGTERM while a stream is in flight: the stream still ends with [DONE], then the
    server exits 0."""
    import http.client

    host, port = base.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    body = json.dumps({"model": lm_id, "prompt": "ROMEO:", "max_tokens": 20000, "stream": True})
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json", "Authorization": "Bearer " + KEY})
    r = conn.getresponse()
    first = r.readline()
    proc.terminate()
    rest = r.read().decode()
    chunks = rest.count("data: {") + 1
    check(first.startswith(b"data: ") and rest.endswith("data: [DONE]\n\n"),
          f"SIGTERM mid-stream: the stream still finished ({chunks} chunks, ends with [DONE])")
    rc = proc.wait(timeout=30)
    check(rc == 0, f"then the server exited with code {rc}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/kiln-serve-e2e")
    a = ap.parse_args()
    kiln = kiln_binary()
    lm, tree = models(a.work, kiln)
    proc, base = start_server(kiln, [lm, tree, IMAGE_DIR], ["--api-key", KEY, "--max-tokens", "20000"])
    try:
        openai_checks(base, os.path.basename(lm), os.path.basename(tree))
        raw_checks(base, os.path.basename(tree))
        browser_checks(base, a.work)
        shutdown_check(proc, base, os.path.basename(lm))
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        print(f"     server log ends: {proc.stderr.read().strip().splitlines()[-1:]}")
    print("all end-to-end checks passed")


if __name__ == "__main__":
    main()
