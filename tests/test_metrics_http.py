"""Serving `/metrics` for real: formats, compression, what each kind of process exports.

- Over real HTTP: Prometheus text by default, OpenMetrics when `Accept` asks for it (one `# EOF`,
  parsed by prometheus_client's strict OpenMetrics parser), gzip when `Accept-Encoding` allows.
- A real worker (`rmq worker run`) serves its own series, never the Redis state unless run with
  `--export-state`; its fixed label sets are there at 0 and so is `process_*` (per child, labelled
  `process`, under the supervisor).
- A producer-only process: `App.serve_metrics` (a thread) and `asgi_app()` (a plain ASGI callable)
  serve its publish series; `python -m workers.traffic` (the compose producer) does it too.
"""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

import rmq
from rmq import metrics
from rmq.embedded import free_port
from rmq.errors import ConfigError
from rmq.httpserver import serve
from rmq.metrics_export import Exposition, asgi_app
from rmq.metrics_state import StateCollector
from tests.helpers import make_settings
from tests.test_runner import GROUP, TOPIC, Runner, child_pids, runner_env, send, wait

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parent.parent
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Reply:
    """An HTTP reply, with its body decompressed when it came gzipped."""

    def __init__(self, status: int, headers: dict[str, str], raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw
        gzipped = headers.get("content-encoding") == "gzip"
        self.text = (gzip.decompress(raw) if gzipped and raw else raw).decode()

    def samples(self) -> Samples:
        """The samples, parsed by the parser that matches the content type (strictly)."""
        if self.headers["content-type"].startswith("application/openmetrics-text"):
            families = list(openmetrics_families(self.text))
        else:
            families = list(text_string_to_metric_families(self.text))
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
        }


def fetch(url: str, accept: str | None = None, gzipped: bool = False, method: str = "GET") -> Reply:
    headers = {"Accept-Encoding": "gzip"} if gzipped else {}
    if accept:
        headers["Accept"] = accept
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return Reply(
                reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read()
            )
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


def check_formats(url: str) -> Samples:
    """Every format and encoding gives the same samples; returns them (from the plain text)."""
    plain = fetch(url)
    assert plain.status == 200
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "content-encoding" not in plain.headers
    got = plain.samples()
    om = fetch(url, accept="application/openmetrics-text; version=1.0.0")
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n") and om.text.count("# EOF") == 1
    om_samples = om.samples()
    zipped = fetch(url, gzipped=True)
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.raw[:2] == b"\x1f\x8b" and len(zipped.raw) < len(plain.raw)
    both = fetch(url, accept=OPENMETRICS, gzipped=True)
    assert both.headers["content-encoding"] == "gzip"
    assert both.text.endswith("# EOF\n")
    rmq_series = {k for k in got if k[0].startswith("rmq_") and not k[0].endswith("_created")}
    assert rmq_series <= set(om_samples)  # OpenMetrics names counter samples the same (`_total`)
    assert rmq_series <= set(both.samples())
    assert {k for k in zipped.samples() if k[0].startswith("rmq_")} == {
        k for k in got if k[0].startswith("rmq_")
    }
    head = fetch(url, gzipped=True, method="HEAD")
    assert head.status == 200 and head.raw == b""
    assert head.headers["content-encoding"] == "gzip"
    return got


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


# ---------------------------------------------------------------------- the exposition over HTTP


async def test_formats_and_gzip_over_http(opened: rmq.App) -> None:
    await opened.send("orders", {"id": 1})
    metrics.flush_published()
    exposition = Exposition(state=StateCollector(opened.context, min_interval=0))
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, "127.0.0.1", 0, {"/metrics": exposition.route})
        url = f"http://127.0.0.1:{port}/metrics"
        got = await anyio.to_thread.run_sync(check_formats, url)
        tg.cancel_scope.cancel()
    assert got[("rmq_stream_length", (("topic", "orders"),))] == 1
    assert got[("rmq_redis_up", ())] == 1
    assert got[("rmq_messages_published_total", (("status", "ok"), ("topic", "orders")))] >= 1
    assert "process_cpu_seconds_total" in names(got)
    assert len([n for n in names(got) if n == "rmq_build_info"]) == 1


# ---------------------------------------------------------------------- real worker processes


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Runner]]:
    started: list[Runner] = []

    def make(env: dict[str, str], *args: str) -> Runner:
        runner = Runner(tmp_path, env, *args)
        started.append(runner)
        return runner

    yield make
    for runner in started:
        runner.kill()


def consumed(runner: Runner) -> float:
    got = fetch(f"http://127.0.0.1:{runner.metrics_port}/metrics").samples()
    return got.get(("rmq_messages_consumed_total", (("group", GROUP), ("result", "ack"),
                                                    ("topic", TOPIC))), 0.0)  # fmt: skip


def test_a_worker_serves_its_own_series_and_no_redis_state(
    start: Callable[..., Runner], redis_url: str, namespace: str
) -> None:
    runner = start(runner_env(redis_url, namespace))
    runner.wait_ready()
    sent = send(redis_url, namespace, 10)
    wait(lambda: consumed(runner) == len(sent), 20, "the messages consumed", runner)
    got = check_formats(f"http://127.0.0.1:{runner.metrics_port}/metrics")
    assert not names(got) & set(metrics.STATE_GAUGES), "the Redis state belongs to the exporter"
    group = (("group", GROUP), ("topic", TOPIC))
    for reason in metrics.DEAD_LETTER_REASONS:  # at 0 from the start
        assert (
            got[("rmq_messages_dead_lettered_total", (group[0], ("reason", reason), group[1]))] == 0
        )
    for state in metrics.TRIM_STATES:
        assert got[("rmq_messages_trimmed_total", (("state", state), ("topic", TOPIC)))] == 0
    assert got[("rmq_messages_in_flight", group)] == 0
    assert got[("process_resident_memory_bytes", ())] > 0
    assert ("process_cpu_seconds_total", ()) in got
    assert any(name == "rmq_build_info" for name, _ in got)
    assert runner.stop() == 0


def test_export_state_is_opt_in(
    start: Callable[..., Runner], redis_url: str, namespace: str
) -> None:
    runner = start(runner_env(redis_url, namespace, RMQ_EXPORT_STATE="1"))
    runner.wait_ready()
    sent = send(redis_url, namespace, 5)
    got = fetch(f"http://127.0.0.1:{runner.metrics_port}/metrics").samples()
    assert got[("rmq_stream_length", (("topic", TOPIC),))] == len(sent)
    assert got[("rmq_redis_up", ())] == 1
    assert runner.stop() == 0


def test_the_supervisor_exports_process_metrics_per_child(
    start: Callable[..., Runner], redis_url: str, namespace: str
) -> None:
    runner = start(runner_env(redis_url, namespace), "--processes", "2")
    runner.wait_ready()
    url = f"http://127.0.0.1:{runner.metrics_port}/metrics"
    got = check_formats(url)
    assert not names(got) & set(metrics.STATE_GAUGES)
    cpu = {dict(labels)["process"] for name, labels in got if name == "process_cpu_seconds_total"}
    assert cpu == {"supervisor", "0", "1"}
    rss = {
        dict(labels)["process"]: v
        for (name, labels), v in got.items()
        if name == "process_resident_memory_bytes"
    }
    assert set(rss) == {"supervisor", "0", "1"} and all(v > 0 for v in rss.values())
    om = fetch(url, accept=OPENMETRICS).samples()  # one family per name, or the parser refuses
    assert {dict(labels)["process"] for name, labels in om if name.startswith("process_cpu")} == cpu

    def started() -> dict[str, float]:
        got = fetch(url).samples()
        return {
            dict(labels)["process"]: v
            for (name, labels), v in got.items()
            if name == "process_start_time_seconds"
        }

    before = started()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        victim = min(child_pids(client, namespace))
    finally:
        client.close()
    time.sleep(0.02)  # start times have a 10 ms resolution
    os.kill(victim, signal.SIGKILL)
    after = before

    def restarted() -> bool:
        nonlocal after
        after = started()
        return set(after) == set(before) and after != before

    wait(restarted, 20, "a restarted child", runner)
    changed = {slot for slot in after if after[slot] != before[slot]}
    assert len(changed) == 1 and changed <= {"0", "1"}  # the same slot, a new process
    runner.wait_ready()  # the new child consumes before the drain
    assert runner.stop() == 0


# ---------------------------------------------------------------------- producer-only processes


async def test_app_serve_metrics_for_a_producer(opened: rmq.App) -> None:
    topic = f"p{os.getpid()}x{time.monotonic_ns()}"
    for n in range(3):
        await opened.send(topic, n)
    with opened.serve_metrics(0) as server:
        url = f"http://127.0.0.1:{server.port}/metrics"
        got = await anyio.to_thread.run_sync(check_formats, url)
        assert got[("rmq_messages_published_total", (("status", "ok"), ("topic", topic)))] == 3
        assert got[("rmq_messages_published_total", (("status", "error"), ("topic", topic)))] == 0
        assert got[("rmq_publish_duration_seconds_count", (("topic", topic),))] >= 1
        assert not names(got) & set(metrics.STATE_GAUGES)
        missing = await anyio.to_thread.run_sync(fetch, f"http://127.0.0.1:{server.port}/other")
        assert missing.status == 404
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{server.port}"):
            opened.serve_metrics(server.port)
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


class AsgiCall:
    """One ASGI request to an app: what it sent back."""

    def __init__(self) -> None:
        self.sent: list[MutableMapping[str, Any]] = []

    async def __call__(
        self, app: Any, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": "/", "raw_path": b"/", "query_string": b"",
            "root_path": "/metrics", "headers": headers or [],
        }  # fmt: skip

        async def receive() -> MutableMapping[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            self.sent.append(message)

        self.sent = []
        await app(scope, receive, send)
        start, body = self.sent
        assert start["type"] == "http.response.start" and body["type"] == "http.response.body"
        return start["status"], dict(start["headers"]), body["body"]


async def test_asgi_app_serves_publish_metrics(opened: rmq.App) -> None:
    topic = f"a{os.getpid()}x{time.monotonic_ns()}"
    await opened.send_batch(topic, [1, 2])
    app = asgi_app()
    call = AsgiCall()
    status, headers, body = await call(app)
    assert status == 200 and headers[b"content-type"].startswith(b"text/plain; version=0.0.4")
    assert int(headers[b"content-length"]) == len(body)
    got = Reply(200, {"content-type": headers[b"content-type"].decode()}, body).samples()
    assert got[("rmq_messages_published_total", (("status", "ok"), ("topic", topic)))] == 2
    assert not names(got) & set(metrics.STATE_GAUGES)
    accept = [(b"accept", OPENMETRICS.encode()), (b"accept-encoding", b"gzip, deflate")]
    status, headers, body = await call(app, headers=accept)
    assert headers[b"content-encoding"] == b"gzip"
    text = gzip.decompress(body).decode()
    assert text.endswith("# EOF\n")
    assert any(f.name == "rmq_messages_published" for f in openmetrics_families(text))
    status, headers, body = await call(app, method="HEAD")
    assert status == 200 and body == b"" and int(headers[b"content-length"]) > 0
    status, _, _ = await call(app, method="POST")
    assert status == 405

    lifespan: list[str] = []
    events = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> MutableMapping[str, Any]:
        return next(events)

    async def send(message: MutableMapping[str, Any]) -> None:
        lifespan.append(message["type"])

    await app({"type": "lifespan"}, receive, send)
    assert lifespan == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_the_compose_producer_serves_its_publish_metrics(redis_url: str, namespace: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RMQ_", "TRAFFIC_"))}
    env.update(RMQ_REDIS_URL=redis_url, RMQ_NAMESPACE=namespace, RMQ_METRICS_PORT=str(port),
               TRAFFIC_RATE="200", PYTHONUNBUFFERED="1")  # fmt: skip
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.traffic"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    ok = (("status", "ok"), ("topic", "orders"))
    try:
        deadline = time.monotonic() + 20
        got: Samples = {}
        while got.get(("rmq_messages_published_total", ok), 0) < 10:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout
            time.sleep(0.2)
            try:
                got = fetch(f"http://127.0.0.1:{port}/metrics").samples()
            except OSError:
                continue
        assert (
            got[("rmq_messages_published_total", (("status", "error"), ("topic", "orders")))] == 0
        )

        async def count() -> int:
            async with rmq.App(make_settings(redis_url, namespace)) as app:
                return sum(q.length for q in (await app.admin.topic_status("orders")).queues)

        assert anyio.run(count) >= 10
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            assert proc.stdout is not None
            proc.stdout.close()


def test_the_readme_producer_snippet_runs(redis_url: str, namespace: str) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("The producer metrics of a process that sends but does not consume:")[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "snippet not found"
    port = free_port()
    probe = (
        "import urllib.request\n"
        f"print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read().decode())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMQ_")}
    env.update(RMQ_REDIS_URL=redis_url, RMQ_NAMESPACE=namespace)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    result = subprocess.run(
        [sys.executable, "-c", match.group(1).replace("9464", str(port)) + probe],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    got = Reply(200, {"content-type": "text/plain"}, result.stdout.encode()).samples()
    assert got[("rmq_messages_published_total", (("status", "ok"), ("topic", "orders")))] == 3
    assert got[("rmq_messages_published_total", (("status", "error"), ("topic", "orders")))] == 0
