"""Serving `/metrics`: what one endpoint shows, in the format and encoding the scraper asks for.

- `Exposition`: the metrics of one endpoint. This process's in-process series (in multiprocess
  mode: those of every process writing to `directory`), the Redis-state gauges when given a
  `StateCollector`, `rmq_build_info`, and process CPU and memory (`process_*`; under the
  supervisor one set per worker process, labelled `process="0"`.. and `process="supervisor"`).
  Rendered as Prometheus text or OpenMetrics, gzip-compressed on request, chosen the way
  prometheus_client's own handlers choose (`choose_encoder`, `gzip_accepted`).
- `asgi_app()`: the same as a plain ASGI callable, to mount in a web app (FastAPI, Starlette,
  Django under ASGI) that produces messages: no extra dependency.
- `serve_metrics(port)`: a small HTTP server in a background thread, for a process that has no
  web server of its own (`App.serve_metrics` calls it).

A worker serves its own series only; the Redis state is served once per Redis (`rmq metrics
serve`), because every endpoint that serves it adds a copy of every gauge.
"""

from __future__ import annotations

import gzip
import os
import platform
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import PROCESS_COLLECTOR, REGISTRY, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from . import metrics
from ._version import __version__
from .errors import ConfigError
from .httpserver import Request, Response
from .metrics_state import StateCollector

__all__ = [
    "Exposition",
    "MetricsServer",
    "asgi_app",
    "multiprocess_dir",
    "process_dead",
    "render",
    "serve_metrics",
]

Pids = Callable[[], Mapping[str, int | str]]
"""Label value -> pid (or "self") of the processes whose `process_*` metrics to show."""
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def multiprocess_dir() -> str | None:
    """The directory of prometheus_client's multiprocess mode, if this process uses it."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def process_dead(pid: int, directory: str) -> None:
    """Forget the live gauges of a worker process that exited (multiprocess mode)."""
    mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


class _Families:
    """A collector yielding metric families read beforehand."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


class _All:
    """Several collectors as one (what an encoder renders)."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self._collectors = list(collectors)

    def collect(self) -> Iterable[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


class _Processes:
    """`process_*` of several processes, one series per process, labelled `process`."""

    def __init__(self, pids: Pids) -> None:
        self._pids = pids
        self._readers: dict[int | str, ProcessCollector] = {}

    def _reader(self, pid: int | str) -> ProcessCollector:
        reader = self._readers.get(pid)
        if reader is None:
            reader = self._readers[pid] = ProcessCollector(pid=lambda: pid, registry=None)
        return reader

    def collect(self) -> Iterable[Metric]:
        pids = dict(self._pids())
        for gone in set(self._readers) - set(pids.values()):
            del self._readers[gone]
        merged: dict[str, Metric] = {}
        for label, pid in pids.items():
            for family in self._reader(pid).collect():
                out = merged.get(family.name)
                if out is None:
                    out = merged[family.name] = Metric(
                        family.name, family.documentation, family.type
                    )
                for sample in family.samples:
                    out.add_sample(sample.name, {**sample.labels, "process": label}, sample.value)
        return merged.values()


def _build_info() -> Metric:
    name, doc, labels = metrics.BUILD_INFO
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    family.add_metric([__version__, platform.python_version()], 1)
    return family


class Exposition:
    """What one `/metrics` endpoint serves.

    - `state`: also the Redis-state gauges (only where they are served once per Redis);
    - `directory`: multiprocess mode, the series of every process writing there;
    - `in_process=False`: none of this process's rmq series (the standalone exporter);
    - `processes`: in multiprocess mode or without `in_process`, whose `process_*` to show,
      labelled (default: this process's, unlabelled).
    """

    def __init__(
        self,
        *,
        state: StateCollector | None = None,
        directory: str | None = None,
        in_process: bool = True,
        processes: Pids | None = None,
    ) -> None:
        self.state = state
        self.directory = directory
        self.in_process = in_process
        own_process = PROCESS_COLLECTOR if processes is None else _Processes(processes)
        self._collectors: list[Collector]
        if not in_process:
            self._collectors = [own_process]
        elif directory is None:
            self._collectors = [REGISTRY]  # this process's series, process_* included
        else:
            multi = MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call]
            self._collectors = [multi, own_process]

    def collector(self, state: Iterable[Metric] = ()) -> Collector:
        """Everything this endpoint shows now, with `state` families read beforehand."""
        metrics.flush_published()
        return _All([*self._collectors, _Families([*state, _build_info()])])

    def respond_now(self, accept: str | None, accept_encoding: str | None) -> Response:
        """The response without the Redis state (synchronous: for ASGI and threads)."""
        return encode(self.collector(), accept, accept_encoding)

    async def respond(self, accept: str | None, accept_encoding: str | None) -> Response:
        """The response, with the Redis state read now (or recently) when there is a collector."""
        state = await self.state.collect() if self.state is not None else []
        return encode(self.collector(state), accept, accept_encoding)

    async def route(self, request: Request) -> Response:
        """A `rmq.httpserver` route serving this endpoint."""
        headers = request.headers
        return await self.respond(headers.get("accept"), headers.get("accept-encoding"))


def encode(collector: Collector, accept: str | None, accept_encoding: str | None) -> Response:
    """Render in the format `accept` asks for (Prometheus text by default, or OpenMetrics),
    gzip-compressed when `accept_encoding` allows it."""
    encoder, content_type = choose_encoder(accept or "")
    body = encoder(collector)
    if gzip_accepted(accept_encoding or ""):
        return Response(200, content_type, gzip.compress(body), (("Content-Encoding", "gzip"),))
    return Response(200, content_type, body)


async def render(
    state: StateCollector | None = None,
    *,
    directory: str | None = None,
    in_process: bool = True,
    accept: str | None = None,
) -> bytes:
    """The uncompressed `/metrics` body of an `Exposition` built with these arguments."""
    exposition = Exposition(state=state, directory=directory, in_process=in_process)
    return (await exposition.respond(accept, None)).body


# ---------------------------------------------------------------------- for producer processes


def asgi_app(*, directory: str | None = None) -> ASGIApp:
    """This process's metrics as an ASGI app, to mount in a web app that sends messages.

    ```python
    fastapi_app.mount("/metrics", rmq.metrics_export.asgi_app())
    ```
    Any path it is given serves the metrics (GET or HEAD). In multiprocess mode (several web
    worker processes sharing `PROMETHEUS_MULTIPROC_DIR`, or `directory`), every process serves
    the sum of all. The Redis state is not included: `rmq metrics serve` exports it.
    """
    exposition = Exposition(directory=directory or multiprocess_dir())

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            raise ValueError(f"rmq's metrics app serves HTTP, not {scope['type']!r}")
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            response = Response(405, "text/plain; charset=utf-8", b"method not allowed\n")
        else:
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            response = exposition.respond_now(headers.get("accept"), headers.get("accept-encoding"))
        raw_headers = [
            (b"content-type", response.content_type.encode("latin-1")),
            (b"content-length", str(len(response.body)).encode()),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers),
        ]
        await send({"type": "http.response.start", "status": response.status,
                    "headers": raw_headers})  # fmt: skip
        await send(
            {"type": "http.response.body", "body": b"" if method == "HEAD" else response.body}
        )

    return app


class MetricsServer:
    """A background HTTP server of this process's `/metrics` (see `serve_metrics`)."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_metrics(
    port: int = 9464, host: str = "127.0.0.1", *, directory: str | None = None
) -> MetricsServer:
    """Serve this process's metrics on http://host:port/metrics from a daemon thread.

    For a process without a web server of its own (a producer script, a Django app under WSGI);
    the server lives until `close()` or the process exits. Raises `ConfigError` when the port
    cannot be bound.
    """
    exposition = Exposition(directory=directory or multiprocess_dir())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _answer(self, body: bool) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                response = Response(404, "text/plain; charset=utf-8", b"not found\n")
            else:
                response = exposition.respond_now(
                    self.headers.get("Accept"), self.headers.get("Accept-Encoding")
                )
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers:
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(response.body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: one line per scrape on stderr would drown the app's logs."""

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc} (pick another port)"
        ) from exc
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="rmq-metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
