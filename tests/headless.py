"""A page opened in headless Chromium with the network cut, over the DevTools protocol on a pipe (no extra package).

``render(path, expression)`` loads a local HTML file, answers every request that is not ``file:`` or ``data:`` with a
network failure (and records it), waits for the page's load event and its scripts to settle, then evaluates a JavaScript
expression in the page and returns its value with the requests that tried to leave the machine.
"""

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def chromium():
    """The Chromium executable ($CHROMIUM or the first on PATH), or None."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


class Rendered(NamedTuple):
    value: object  # what the expression returned
    requests: list  # every URL the page asked for
    left: list  # those that would have left the machine (answered "internet disconnected")


class _Pipe:
    def __init__(self, process, to_browser, from_browser):
        self.process, self.to_browser, self.from_browser = process, to_browser, from_browser
        self.next_id, self.buffer, self.events = 0, b"", []

    def _read(self, deadline, quiet=False):
        """The next message; None if ``quiet`` and nothing came before ``deadline`` (else a TimeoutError)."""
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_browser], [], [], left)[0]:
                if quiet:
                    return None
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium closed its pipe (exit {self.process.poll()})")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def post(self, method, session=None, **params):
        """Send a command without waiting for its answer (which the event loop then skips)."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")

    def send(self, method, session=None, timeout=30, **params):
        self.post(method, session, **params)
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read(deadline))


def _as_fds_3_and_4(commands, answers):
    # in the child, before exec: copies first, so that neither pipe end is overwritten before it is moved
    commands, answers = os.dup(commands), os.dup(answers)
    os.dup2(commands, 3)
    os.dup2(answers, 4)


def render(path, expression, settle_s=1.0, timeout=60):
    """Open ``path`` in headless Chromium with no network and return ``expression``'s value in the loaded page."""
    executable = chromium()
    if executable is None:
        raise FileNotFoundError(f"no Chromium found (looked for $CHROMIUM and {', '.join(CANDIDATES)} on PATH); "
                                "on Debian: apt-get install chromium")
    # the browser reads commands on its fd 3 and answers on its fd 4
    commands_read, commands_write = os.pipe()
    answers_read, answers_write = os.pipe()
    # the browser's helper processes may still be writing to its profile as it exits
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=lambda: _as_fds_3_and_4(commands_read, answers_write))
        os.close(commands_read)
        os.close(answers_write)
        pipe = _Pipe(process, commands_write, answers_read)
        try:
            target = pipe.send("Target.createTarget", url="about:blank")["targetId"]
            session = pipe.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            pipe.send("Fetch.enable", session, patterns=[{"urlPattern": "*"}])
            pipe.send("Network.enable", session)
            pipe.send("Network.emulateNetworkConditions", session, offline=True, latency=0, downloadThroughput=-1,
                      uploadThroughput=-1)
            pipe.send("Page.enable", session)
            # not awaited: the navigation's own request pauses in Fetch until the loop below lets it through
            pipe.post("Page.navigate", session, url=Path(path).resolve().as_uri())
            requests, left = [], []
            deadline, settled = time.monotonic() + timeout, None
            while True:
                if pipe.events:
                    event = pipe.events.pop(0)
                else:
                    event = pipe._read(settled or deadline, quiet=settled is not None)
                    if event is None:  # quiet since the load event plus settle_s: the page is done
                        break
                method = event.get("method")
                if method == "Fetch.requestPaused":
                    url = event["params"]["request"]["url"]
                    requests.append(url)
                    if url.startswith(("file:", "data:")):
                        pipe.post("Fetch.continueRequest", session, requestId=event["params"]["requestId"])
                    else:
                        left.append(url)
                        pipe.post("Fetch.failRequest", session, requestId=event["params"]["requestId"],
                                  errorReason="InternetDisconnected")
                elif method == "Page.loadEventFired" and settled is None:
                    settled = time.monotonic() + settle_s  # a script's late request still counts
            result = pipe.send("Runtime.evaluate", session, expression=expression, returnByValue=True, awaitPromise=True)
            if "exceptionDetails" in result:
                raise RuntimeError(f"the check raised in the page: {result['exceptionDetails']}")
            return Rendered(result["result"].get("value"), requests, left)
        finally:
            try:
                pipe.post("Browser.close")
                process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
            os.close(commands_write)
            os.close(answers_read)
