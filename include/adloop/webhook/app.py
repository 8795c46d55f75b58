"""The receiver as an ASGI app (Starlette), served by `adloop webhook` under uvicorn.

    POST /stripe/webhook    Stripe's deliveries, verified with the endpoint secret
    POST /app/schedule      a booking the app confirmed (Schedule), signed with the app secret
    POST /consent/opt-out   a customer who declined tracking, signed with the app secret
    GET  /pixel.js          the browser snippet (PageView, Lead, ..., with the shared event_id scheme)
    GET  /health            queue depth and send counts

A request is answered once its ledger row is committed; the CAPI send happens afterwards in the
background (`sender.CapiWorker`), so Stripe never waits on Meta. A bad or missing signature is a
400 that writes nothing; a failure to write the warehouse is a 500, and Stripe delivers again.

Stripe deliveries are written by one writer at a time (`Batcher`): those that arrive while a
batch is being written wait for the next, and each batch is hashed in one call and written in one
transaction. Alone, a delivery is written at once; under load, the batches grow instead of the
requests queueing for the warehouse's write lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adloop.warehouse import connect, ensure_schema
from adloop.webhook import signatures
from adloop.webhook.intake import BadRequest, Intake
from adloop.webhook.sender import CapiWorker
from adloop.webhook.settings import WebhookSettings

log = logging.getLogger(__name__)

# Deliveries one batch takes at most; more wait for the next batch.
BATCH_MAX = 64
PIXEL_JS = Path(__file__).resolve().parents[1] / "web" / "pixel.js"
MAX_BODY_BYTES = 512 * 1024
APP_SIGNATURE_HEADER = "Adloop-Signature"


def create_app(settings: WebhookSettings, *, sender_factory=None, clock=None) -> Starlette:
    """The receiver. `sender_factory` and `clock` are for tests (a fake CAPI sender, a fixed now)."""
    engine = connect(settings.warehouse_url)
    ensure_schema(engine)
    pixel_id = settings.meta.pixel_id if settings.meta else None
    intake = Intake(engine, pixel_id=pixel_id, default_country=settings.default_country,
                    **({"clock": clock} if clock else {}))
    worker = CapiWorker(engine, settings.meta, queue_size=settings.queue_size, batch_max=settings.batch_max,
                        sender_factory=sender_factory)
    pixel_js = PIXEL_JS.read_bytes()

    def write_deliveries(deliveries: list[dict]) -> list:
        results = intake.stripe_events(deliveries)
        for result in results:
            if not isinstance(result, Exception) and result.row is not None:
                worker.submit(result.row)
        return results

    stripe_batcher = Batcher(write_deliveries, max_size=BATCH_MAX)

    async def read_signed(request: Request, secrets, header: str) -> bytes:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise BadRequest(f"the body is larger than {MAX_BODY_BYTES} bytes")
        signatures.verify(body, request.headers.get(header), secrets, tolerance=settings.tolerance_seconds,
                          now=clock() if clock else None)
        return body

    async def handle(request: Request, secrets, header: str, work) -> Response:
        try:
            body = await read_signed(request, secrets, header)
            document = json.loads(body)
            result = await work(document)
        except signatures.SignatureError as exc:
            log.warning("%s: rejected, %s", request.url.path, exc)
            return JSONResponse({"error": f"signature: {exc}"}, 400)
        except (BadRequest, ValueError) as exc:  # JSONDecodeError is a ValueError
            log.warning("%s: bad request, %s", request.url.path, exc)
            return JSONResponse({"error": str(exc)}, 400)
        return result

    async def stripe_webhook(request: Request) -> Response:
        async def work(event):
            result = await stripe_batcher.submit(event)
            return JSONResponse({"received": True, **result.public()})

        return await handle(request, settings.stripe_secrets, "Stripe-Signature", work)

    async def schedule(request: Request) -> Response:
        def work(body):
            result = intake.schedule(body)
            if result.row is not None:
                worker.submit(result.row)
            return JSONResponse(result.public(), 202 if result.outcome == "queued" else 200)

        return await handle(request, settings.app_secrets, APP_SIGNATURE_HEADER, in_thread(work))

    async def opt_out(request: Request) -> Response:
        def work(body):
            if not isinstance(body, dict):
                raise BadRequest("the body is not a JSON object")
            return JSONResponse({"recorded": intake.opt_out(body, source=str(body.get("source") or "app"))})

        return await handle(request, settings.app_secrets, APP_SIGNATURE_HEADER, in_thread(work))

    async def pixel(request: Request) -> Response:
        return Response(pixel_js, media_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=300"})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "capi": worker.status()})

    async def retry_schedules() -> None:
        while True:
            await asyncio.sleep(settings.retry_interval_seconds)
            try:
                await run_in_threadpool(worker.requeue_stale_schedules, settings.retry_after_seconds)
            except Exception:
                log.exception("capi sender: retrying stale Schedule events failed; trying again later")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await run_in_threadpool(intake.warm_up)
        worker.start()
        retry = asyncio.create_task(retry_schedules()) if worker.enabled else None
        log.info("webhook: ready; CAPI sends %s", f"to pixel {pixel_id}" if worker.enabled else
                 "disabled (no Meta settings): the nightly DAG sends what the ledger holds")
        try:
            yield
        finally:
            if retry is not None:
                retry.cancel()
            await run_in_threadpool(worker.stop)

    app = Starlette(
        routes=[
            Route("/stripe/webhook", stripe_webhook, methods=["POST"]),
            Route("/app/schedule", schedule, methods=["POST"]),
            Route("/consent/opt-out", opt_out, methods=["POST"]),
            Route("/pixel.js", pixel, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.worker = worker
    app.state.intake = intake
    return app


def in_thread(work):
    async def run(document):
        return await run_in_threadpool(work, document)

    return run


class Batcher:
    """Runs `process` (in a worker thread) on the items submitted, a batch at a time.

    Items submitted while a batch is running wait for the next one, so there is no timer: alone,
    an item is processed at once; under load, batches grow to `max_size`. `process` returns one
    result per item, or an exception for the item it failed, raised to that item's caller only.
    Lives on the event loop's thread, so its list needs no lock.
    """

    def __init__(self, process, *, max_size: int):
        self.process = process
        self.max_size = max_size
        self._waiting: list[tuple[object, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    async def submit(self, item):
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        batch: list[tuple[object, asyncio.Future]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self.max_size], self._waiting[self.max_size :]
                try:
                    results = await run_in_threadpool(self.process, [item for item, _ in batch])
                except Exception as exc:
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its request was cancelled (the client went away)
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                batch = []
        finally:
            self._task = None
            if batch:  # cancelled mid-batch (shutdown): those requests fail rather than hang
                for _, future in batch + self._waiting:
                    future.cancel()
                self._waiting = []


def serve(settings: WebhookSettings, *, host: str = "127.0.0.1", port: int = 8090) -> None:
    import uvicorn

    if not settings.stripe_secrets:
        log.warning("webhook: ADLOOP_STRIPE_WEBHOOK_SECRET is not set; every Stripe delivery will be refused")
    # One process (uvicorn's default, with uvloop and httptools when installed): the CAPI queue and
    # the delivery batcher live in it, and the warehouse takes one writer at a time anyway. It
    # holds 100 deliveries/s on two shared cores (benchmarks/bench_webhook.py); more workers would
    # each need their own sender and would contend for SQLite's write lock.
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False, log_level="info",
                timeout_graceful_shutdown=10)
