"""What the app's tests and benchmarks share: the tiny fixture model, a demo
built on it, and `LiveServer`, which runs `python app.py` the way users do.

`benchmarks/bench_app.py` and `benchmarks/bench_browser.py` import
`LiveServer` from here too, so that tests and measurements start the server
the same way. Nothing here imports pytest at module level.
"""

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE_MODELS = REPO_ROOT / "tests" / "fixtures" / "models"
TINY_MODEL = "en-es-tiny"
# Debian's Chromium (apt-get install chromium) and the flags it needs in a
# container; Playwright drives it (`playwright install` is not needed).
CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def tiny_demo():
    """`(demo, translators)` of the app on the fixture model, built in-process."""
    from explorer import build_demo
    from explorer.models import load_translator

    translators = {TINY_MODEL: load_translator(FIXTURE_MODELS / TINY_MODEL)}
    return build_demo(translators), translators


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """`python app.py` on a free localhost port, in its own process group,
    with its output in a file (a full pipe would block the server).

    Args:
        models_dir: `KERAS_MHA_MODELS_DIR` of the server.
        env: more environment variables (e.g. `KERAS_BACKEND`,
            `GRADIO_MCP_SERVER`).
        app: the app file.

    Example:

    ```python
    with LiveServer(models_dir) as server:
        server.wait_until_up(timeout=300)
        Client(server.url).predict(..., api_name="/translate")
    ```
    """

    def __init__(self, models_dir=FIXTURE_MODELS, env=None, app=REPO_ROOT / "app.py"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env = dict(
            os.environ,
            KERAS_MHA_MODELS_DIR=str(models_dir),
            GRADIO_SERVER_NAME="127.0.0.1",
            GRADIO_SERVER_PORT=str(self.port),
            GRADIO_ANALYTICS_ENABLED="False",
            TF_CPP_MIN_LOG_LEVEL="3",
            **(env or {}),
        )
        self.app = pathlib.Path(app).resolve()
        self.log = None
        self.process = None
        self.started = None

    def start(self):
        self.log = tempfile.TemporaryFile("w+")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, self.app.name],
            cwd=self.app.parent,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Its own group: stop() reaches children.
        )
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def output(self, chars=5000):
        self.log.seek(0)
        return self.log.read()[-chars:]

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def check_alive(self):
        if not self.alive():
            raise RuntimeError(f"app.py exited:\n{self.output()}")

    def wait_until_up(self, timeout=300):
        """Returns once the page answers; raises if the server exits first."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                with urllib.request.urlopen(self.url, timeout=5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"No answer on {self.url} in {timeout} s:\n{self.output()}"
                    ) from None
                time.sleep(0.2)

    def wait_for_output(self, text, timeout=300):
        """Returns once the server has printed `text` (e.g. a log line)."""
        deadline = time.monotonic() + timeout
        while text not in self.output(chars=10**6):
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not printed in {timeout} s")
            time.sleep(0.2)
        return self

    def pids(self):
        """The server's pid and those of all its descendants."""
        pids, queue = [], [self.process.pid]
        while queue:
            pid = queue.pop()
            pids.append(pid)
            for children in pathlib.Path(f"/proc/{pid}/task").glob("*/children"):
                with contextlib.suppress(OSError):  # The thread just ended.
                    queue += [int(c) for c in children.read_text().split()]
        return pids

    def memory_mb(self):
        """Peak (`VmHWM`) and current (`VmRSS`) resident memory, summed over
        the server's processes, in MB."""
        totals = {"VmHWM": 0, "VmRSS": 0}
        pids = self.pids()
        for pid in pids:
            try:
                status = pathlib.Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                key, _, value = line.partition(":")
                if key in totals:
                    totals[key] += int(value.split()[0])  # kB
        return {
            "peak_mb": round(totals["VmHWM"] / 1024, 1),
            "current_mb": round(totals["VmRSS"] / 1024, 1),
            "processes": len(pids),
        }

    def stop(self):
        """Ctrl-C first, so that the app exits normally and removes its temp
        files; then the whole group, harder."""
        if self.process is None:
            return
        for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10)):
            if self.process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=wait)
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self.log:
            self.log.close()
            self.log = None


@contextlib.contextmanager
def serve_app(models_dir=FIXTURE_MODELS, env=None, timeout=300):
    """A pytest fixture body: yields the URL of a live server; fails the test
    with the server's output if it does not come up or dies."""
    import pytest

    with LiveServer(models_dir, env) as server:
        try:
            server.wait_until_up(timeout)
        except (RuntimeError, TimeoutError) as error:
            pytest.fail(str(error))
        yield server.url
        assert server.alive(), f"app.py died:\n{server.output()}"
