"""The FastAPI application and `run_server`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import Depends, FastAPI

from dockyard import api_errors, web
from dockyard.config import ServerSettings, split_listen
from dockyard.server import (
    audit,
    console,
    live_migrate,
    liveness,
    migrate,
    stacks_loop,
    strict_query,
)
from dockyard.server.agent_proxy import AgentProxy
from dockyard.server.alerts.engine import AlertEngine, ensure_default_rules
from dockyard.server.bootstrap import init_store, private_home
from dockyard.server.build_runner import BuildRunner
from dockyard.server.build_secrets import SecretBox
from dockyard.server.context import ServerContext
from dockyard.server.feed import router as feed_router
from dockyard.server.notifier import Notifier
from dockyard.server.ratelimit import RateLimitMiddleware, TokenBuckets
from dockyard.server.registry import RegistryProcess
from dockyard.server.registry import client as registry_client
from dockyard.server.registry_proxy import RegistryProxy
from dockyard.server.registry_proxy import router as registry_proxy_router
from dockyard.server.routers import (
    alerts,
    builds,
    cluster,
    hooks,
    images,
    instances,
    networks,
    projects,
    stacks,
    volumes,
)
from dockyard.server.routers import entrance as entrance_router
from dockyard.server.routers import stats as stats_router
from dockyard.server.routers.snapshots import router as snapshots_router
from dockyard.serving import KEEP_ALIVE, PromptServer
from dockyard.store.changes import ChangeChannel
from dockyard.store.db import Database
from dockyard.tls import TlsFiles, ensure_ca, ensure_server_cert, server_names

log = logging.getLogger(__name__)


def _recover_migrations(ctx: ServerContext) -> None:
    """Cold migrations, then live ones (which build on the cold module), left by a restart."""
    migrate.recover(ctx)
    live_migrate.recover(ctx)


def create_app(settings: ServerSettings) -> FastAPI:
    private_home(settings.home)
    db = Database(settings.db_url())
    init_store(db)
    ensure_default_rules(db, settings)
    channel = ChangeChannel(db.url) if db.is_postgres else None  # several servers, one db
    tls = TlsFiles(settings.tls_dir) if settings.tls_dir else None
    ctx = ServerContext(settings=settings, db=db, notifier=Notifier(channel),
                        agents=AgentProxy(ca=tls.ca if tls else None),
                        registry=registry_client(settings))
    registry = RegistryProcess(settings.home)
    proxy = RegistryProxy(settings)
    build_runner = BuildRunner(ctx, SecretBox(settings.home))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        ctx.notifier.bind(asyncio.get_running_loop())
        if settings.registry_managed:
            registry.start()  # here, in the main thread: the child dies with it
            await asyncio.to_thread(registry.wait_ready)
        alert_loop = asyncio.create_task(AlertEngine(db, settings, ctx.notifier.bump).run())
        recovery = asyncio.create_task(asyncio.to_thread(_recover_migrations, ctx))
        build_loop = asyncio.create_task(build_runner.run())
        stack_loop = asyncio.create_task(stacks_loop.run(ctx))  # level-triggered convergence
        heartbeats = asyncio.create_task(liveness.flusher(
            ctx.liveness, db, liveness.flush_interval(settings.heartbeat_timeout),
            ctx.notifier.bump))
        yield
        heartbeats.cancel()
        stack_loop.cancel()
        build_loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await build_loop
        ctx.notifier.close_waiters()  # (PromptServer did it already when it runs the app)
        recovery.cancel()
        alert_loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await alert_loop
        await ctx.notifier.close()
        ctx.agents.close()
        ctx.registry.close()
        await proxy.aclose()
        registry.stop()
        db.close()

    app = FastAPI(title="Dockyard", version="0.1.0", lifespan=lifespan,
                  description="A private container cloud: VM-like machine containers.",
                  dependencies=[Depends(strict_query.refuse_unknown_query)])
    app.state.ctx = ctx
    app.state.registry_proxy = proxy
    app.state.builds = build_runner
    api_errors.install(app)
    api_errors.document(app)
    app.add_middleware(audit.AuditMiddleware, ctx=ctx)
    if settings.rate_limit > 0:  # outside the audit: a refused call costs no row
        app.add_middleware(RateLimitMiddleware,
                           buckets=TokenBuckets(settings.rate_limit, settings.rate_burst))
    for router in (cluster.router, projects.router, instances.router, console.router,
                   networks.router, volumes.router, snapshots_router, images.router, feed_router,
                   alerts.router, stats_router.router, stacks.router, builds.router,
                   hooks.router, entrance_router.router, audit.router):
        app.include_router(router)
    app.include_router(registry_proxy_router)  # /v2/: not in the OpenAPI schema
    web.install(app, ctx)  # the web console at / (not in the OpenAPI schema)
    return app


def server_tls(settings: ServerSettings) -> TlsFiles | None:
    """The CA and this server's certificate (created when missing; the certificate names the
    listen host, this machine's name, localhost and 127.0.0.1)."""
    if settings.tls_dir is None:
        return None
    files = TlsFiles(settings.tls_dir)
    ensure_ca(files)
    host, _ = split_listen(settings.listen)
    ensure_server_cert(files, server_names(host))
    return files


def run_server(settings: ServerSettings) -> None:
    host, port = split_listen(settings.listen)
    tls = server_tls(settings)
    app = create_app(settings)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_keep_alive=KEEP_ALIVE, timeout_graceful_shutdown=2,
                            ssl_certfile=tls.cert if tls else None,
                            ssl_keyfile=tls.key if tls else None)
    PromptServer(config, on_shutdown=app.state.ctx.notifier.close_waiters).run()
