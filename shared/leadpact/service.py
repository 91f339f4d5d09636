"""Bootstrap shared by the five services: wires settings, clock, database, bus, contract,
metrics, outbox relay, event handlers, background workers and the HTTP app.

A service describes itself with a :class:`ServiceDefinition`; :func:`create_app` turns it
into a FastAPI app whose lifespan starts and stops everything in order. Event handlers are
plain functions; besides ``event``, ``uow`` and ``clock`` they may ask for any attribute of
:class:`ServiceContext` (``contracts``, ``metrics``, ``settings``, ``bus``, ``extras`` keys)
by parameter name, and get it injected once at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import structlog
import uvicorn
import uvloop
from fastapi import APIRouter, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadpact.bus import EventBus, bus_from_url
from leadpact.clock import Clock, SystemClock
from leadpact.consumer import EventDispatcher
from leadpact.contract import ContractBook
from leadpact.db import Database
from leadpact.events import EventData
from leadpact.gc_tuning import GcTuning
from leadpact.logging import configure_logging
from leadpact.messaging import OutboxRelay, UnitOfWork
from leadpact.metrics import ServiceMetrics
from leadpact.migrations import upgrade_async
from leadpact.nul_characters import RefuseNulCharacters
from leadpact.settings import Settings

log = structlog.get_logger("leadpact.service")


class Worker(Protocol):
    """A background task a service runs beside its API (timers, retraining, ...)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class ServiceContext:
    """Everything a service's routes, handlers and workers may depend on."""

    name: str
    settings: Settings
    clock: Clock
    db: Database
    bus: EventBus
    contracts: ContractBook
    metrics: ServiceMetrics
    relay: OutboxRelay
    extras: dict[str, Any] = field(default_factory=dict)
    ready: bool = False

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.db, self.clock, self.name, on_commit=self.relay.wake)


HandlerFunction = Callable[..., Awaitable[None]]
"""An event handler as a service writes it: ``(event, uow, clock, *extras)``; :func:`inject`
binds the extras by parameter name, leaving ``(event, uow, clock)``."""


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    title: str
    default_port: int
    migrations: Path
    event_handlers: Mapping[type[EventData], HandlerFunction] = field(default_factory=dict)
    batch_handlers: Mapping[type[EventData], HandlerFunction] = field(default_factory=dict)
    """Optional: a topic's events of one consumer batch in one call, ``(events, uow, clock,
    *extras)``; same effect as the event handler on each in order (see leadpact.consumer)."""
    routers: Callable[[ServiceContext], Sequence[APIRouter]] = lambda ctx: ()
    workers: Callable[[ServiceContext], Sequence[Worker]] = lambda ctx: ()
    setup: Callable[[ServiceContext], Awaitable[None]] | None = None
    description: str = ""


def inject(handler: HandlerFunction, ctx: ServiceContext) -> HandlerFunction:
    """Bind the handler's extra parameters (beyond event(s), uow, clock) from the context."""
    bound: dict[str, Any] = {}
    for name in list(inspect.signature(handler).parameters)[3:]:
        if name in ctx.extras:
            bound[name] = ctx.extras[name]
        elif hasattr(ctx, name):
            bound[name] = getattr(ctx, name)
        else:
            raise TypeError(f"{handler.__qualname__}: nothing to inject for parameter {name!r}")
    return partial(handler, **bound) if bound else handler


def build_dispatcher(definition: ServiceDefinition, ctx: ServiceContext) -> EventDispatcher:
    """The service's consumer: its event (and batch) handlers with their extras bound."""
    return EventDispatcher(
        f"leadpact-{definition.name}",
        {m: inject(h, ctx) for m, h in definition.event_handlers.items()},
        ctx.uow,
        ctx.clock,
        ctx.metrics,
        retries=ctx.settings.consumer_retries,
        batch_handlers={m: inject(h, ctx) for m, h in definition.batch_handlers.items()},
    )


def build_context(
    definition: ServiceDefinition,
    settings: Settings,
    *,
    clock: Clock | None = None,
    bus: EventBus | None = None,
) -> ServiceContext:
    metrics = ServiceMetrics(definition.name)
    db = Database(settings.database_url)
    the_bus = bus if bus is not None else bus_from_url(settings)
    relay = OutboxRelay(
        db,
        the_bus,
        poll_seconds=settings.relay_poll_seconds,
        linger_seconds=settings.relay_linger_seconds,
        on_published=lambda topic: metrics.events_published.labels(topic).inc(),
    )
    return ServiceContext(
        name=definition.name,
        settings=settings,
        clock=clock or SystemClock(),
        db=db,
        bus=the_bus,
        contracts=ContractBook.load(settings.contract_path),
        metrics=metrics,
        relay=relay,
    )


def create_app(
    definition: ServiceDefinition,
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    bus: EventBus | None = None,
) -> FastAPI:
    """The service's ASGI app. A bus passed in is shared (embedded mode) and not started or
    stopped by this app; otherwise the app owns the bus built from ``settings.bus_url``."""
    settings = settings or Settings()
    ctx = build_context(definition, settings, clock=clock, bus=bus)
    owns_bus = bus is None
    collector = GcTuning(settings.gc_gen0_threshold)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await upgrade_async(settings.database_url, definition.migrations)
        if owns_bus:
            await ctx.bus.start()
        if definition.setup is not None:
            await definition.setup(ctx)
        ctx.relay.start()
        subscription = None
        if definition.event_handlers:
            dispatcher = build_dispatcher(definition, ctx)
            subscription = await ctx.bus.subscribe(
                dispatcher.consumer,
                dispatcher.topics,
                dispatcher,
                on_assigned=ctx.extras.get("on_assigned"),
                on_revoked=ctx.extras.get("on_revoked"),
            )
            ctx.metrics.consumer_lag.source = subscription.lag
        workers = list(definition.workers(ctx))
        for worker in workers:
            await worker.start()
        await collector.start()
        ctx.ready = True
        log.info("service started", service=definition.name)
        try:
            yield
        finally:
            ctx.ready = False
            for worker in reversed(workers):
                await worker.stop()
            if subscription is not None:
                ctx.metrics.consumer_lag.source = None
                await subscription.stop()
            await ctx.relay.stop()
            with contextlib.suppress(Exception):
                await ctx.relay.relay_once()  # flush what is committed while the bus is up
            if owns_bus:
                await ctx.bus.stop()
            await ctx.db.dispose()
            await collector.stop()

    app = FastAPI(
        title=f"leadpact {definition.title}",
        description=definition.description,
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    # Added first, so it runs inside RequestMetrics: its 422s are counted too.
    app.add_middleware(RefuseNulCharacters, routes=app.router.routes)  # type: ignore[arg-type]
    app.add_middleware(RequestMetrics, metrics=ctx.metrics)  # type: ignore[arg-type]
    app.include_router(_operations_router(ctx))
    for router in definition.routers(ctx):
        app.include_router(router)
    return app


def _operations_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": ctx.name}

    @router.get("/readyz", summary="Readiness: database and bus reachable, consumers running")
    async def readyz(response: Response) -> dict[str, Any]:
        checks = {
            "started": ctx.ready,
            "database": await ctx.db.ping(),
            "bus": await ctx.bus.healthy(),
        }
        ok = all(checks.values())
        response.status_code = 200 if ok else 503
        return {"status": "ready" if ok else "not ready", "checks": checks}

    @router.get("/metrics", summary="Prometheus metrics of this service", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


class RequestMetrics:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the intake hot path)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # The children of each (route, method, status): ``labels()`` validates and locks on
        # every call, a few µs per request on intake's hot path; the set is small.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            if route != "/metrics":
                requests, latency = self._of(route, scope["method"], status)
                requests.inc()
                latency.observe(time.perf_counter() - started)

    def _of(self, route: str, method: str, status: int) -> tuple[Any, Any]:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.metrics.http_requests.labels(route, method, str(status)),
                self.metrics.http_latency.labels(route, method),
            )
        return children


class _QuietServer(uvicorn.Server):
    """uvicorn server that leaves signal handling to us, so several can share one loop."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def, override]
        yield


# A service in a process of its own (the distributed mode, and bench.intake's servers) runs
# on uvloop's event loop with uvicorn's httptools parser: measured in bench.e2e distributed
# at 300 leads/s, alternated pairs, 5-10 % less CPU per lead and a lower p99 (README
# "Performance"). The embedded mode keeps asyncio's loop and h11: there the same change cost
# 15-35 % more CPU per lead (two pairs each for uvloop with httptools and httptools alone).
PROCESS_HTTP = "httptools"
EMBEDDED_HTTP = "h11"


async def serve_all(
    apps: Mapping[str, tuple[FastAPI, str, int]], http: str = EMBEDDED_HTTP
) -> None:
    """Serve several apps in this event loop until SIGINT/SIGTERM; stop them cleanly."""
    servers = [
        _QuietServer(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                http=http,
                log_level="warning",
                access_log=False,
                lifespan="on",
            )
        )
        for app, host, port in apps.values()
    ]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        await asyncio.gather(*(s.serve() for s in servers))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def serve(definition: ServiceDefinition, settings: Settings | None = None) -> None:
    """Run one service as its own process (the distributed mode)."""
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_json)
    port = settings.port or definition.default_port
    app = create_app(definition, settings)
    print(f"leadpact {definition.name} on http://{settings.host}:{port}", flush=True)
    uvloop.run(serve_all({definition.name: (app, settings.host, port)}, http=PROCESS_HTTP))
