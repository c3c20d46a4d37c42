"""The HTTP API: FastAPI app, lifespan, routes, error bodies.

Shared state (engine, batcher, similar-text indexes, metrics) lives in one ServerState on
`app.state`, reached by dependency injection (`Depends(state)`). Start-up (loading the adapters,
warming them, building their indexes) runs in the lifespan; every model call runs on the
batcher's worker thread, never on the event loop. Every error a client can cause answers with
`{"error": {"code", "message", "request_id"}}`: 422 malformed body, 404 unknown adapter (with the
loaded names), 413 too many / too long texts, 503 + Retry-After while not ready or when the queue is
full, 401/403 for management and tokens (auth.py). No body names a server path or repeats an
exception's text: those go to the log under the request's id (`X-Request-ID`, echoed or made here).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lora_lab.errors import UserError
from lora_lab.job.allocator import release_free_memory
from lora_lab.serve.auth import allowed_path, check_admin, check_api
from lora_lab.serve.batcher import Batcher, QueueFull
from lora_lab.serve.engine import Engine
from lora_lab.serve.index import SimilarIndex, build_index
from lora_lab.serve.middleware import RETRY_AFTER_S, RequestAccounting, error_response
from lora_lab.serve.monitoring import Metrics
from lora_lab.serve.schemas import (
    AdapterInfo,
    ErrorResponse,
    FanOutResponse,
    LabelScore,
    Prediction,
    PredictRequest,
    PredictResponse,
    PutAdapter,
    SimilarExample,
    SimilarRequest,
    SimilarResponse,
    Telemetry,
)
from lora_lab.serve.sources import resolve_source

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
ERRORS = {code: {"model": ErrorResponse} for code in (404, 413, 422, 503)}
AUTH_ERRORS = {code: {"model": ErrorResponse} for code in (401, 403)}


@dataclass
class Settings:
    """conf/serve.yaml, minus where to listen."""

    adapters: dict[str, str] = field(default_factory=dict)
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_text_chars: int = 2000
    max_texts_per_request: int = 64
    max_queue: int = 2048
    quantize: str = "none"
    precision: str = "auto"
    threads: int | None = None
    similar_max_rows: int = 20000
    log_path: str | None = None
    log_texts: bool = False
    # auth.py: PUT/DELETE /v1/adapters only with management on, the admin token, and under adapter_roots.
    management: bool = False
    admin_token: str | None = field(default=None, repr=False)  # from the environment or a file, never argv
    adapter_roots: list[str] = field(default_factory=list)
    api_tokens: list[str] = field(default_factory=list, repr=False)  # set: /v1/predict and /v1/similar need one


@dataclass
class ServerState:
    settings: Settings
    engine: Engine
    batcher: Batcher
    metrics: Metrics
    indexes: dict[str, SimilarIndex | None] = field(default_factory=dict)
    ready: bool = False
    failed: dict[str, str] = field(default_factory=dict)  # configured models that did not load, and why
    loading: asyncio.Lock = field(default_factory=asyncio.Lock)
    # drain.py: set at SIGTERM. accepted/answered count the API requests let in and the answers sent.
    draining: bool = False
    accepted: int = 0
    answered: int = 0

    async def load(self, name: str, path: str) -> None:
        """Validate, load and warm `path` under `name`, build its /similar index; swap it in last."""
        source = await asyncio.to_thread(resolve_source, path)  # reads small JSON files only
        async with self.loading:  # one load at a time; requests keep being served meanwhile
            served = await self.batcher.call(self.engine.load, name, source)
            self.metrics.quality.forget(name)  # a replaced model starts a new window
            await self.batcher.call(self.engine.warm, name)  # the warm-up is no traffic: counts start after it
            self.indexes[name] = await self.batcher.call(
                build_index, self.engine, served, self.settings.similar_max_rows
            )
            await self.batcher.call(release_free_memory)

    async def load_all(self, adapters: dict[str, str]) -> None:
        """The configured models, in order; a model that fails to load is logged and left out."""
        for name, path in adapters.items():
            try:
                await self.load(name, str(path))
                log.info("serving %s from %s", name, path)
            except Exception as err:  # the others still load; /readyz lists what is served
                self.failed[name] = "did not load: the server log says why"
                log.error("could not load %s from %s: %s: %s", name, path, type(err).__name__, err)
        self.ready = True

    async def unload(self, name: str) -> None:
        async with self.loading:
            await self.batcher.call(self.engine.unload, name)
            self.indexes.pop(name, None)
            self.metrics.quality.forget(name)


# The dependencies are `async def`: FastAPI runs a plain `def` dependency in its thread pool, a thread
# hop per request for a few attribute reads (FastAPI's docs: "Dependencies", async or not).
async def state(request: Request) -> ServerState:
    return request.app.state.server


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "-")


async def admin(request: Request, server: ServerState = Depends(state)) -> None:
    """Dependency of the management routes (auth.py)."""
    check_admin(request, server.settings.management, server.settings.admin_token)


async def api_client(request: Request, server: ServerState = Depends(state)) -> None:
    """Dependency of the prediction routes: an API token where the server has any."""
    check_api(request, server.settings.api_tokens)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = Engine(quantize=settings.quantize, precision=settings.precision)
        metrics = Metrics()
        batcher = Batcher(
            engine,
            settings.max_batch_size,
            settings.max_wait_ms,
            settings.max_queue,
            threads=settings.threads,
            on_batch=metrics.observe_batch,
        )
        server = ServerState(settings, engine, batcher, metrics)
        app.state.server = server
        batcher.start()
        # Loading runs after start-up, so the server listens at once: /healthz answers and /readyz
        # says 503 until every configured model is loaded and warmed.
        loading = asyncio.create_task(server.load_all(settings.adapters))
        yield
        if server.draining:
            log.info("drained: %d requests accepted, %d answered", server.accepted, server.answered)
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
        await batcher.stop()

    app = FastAPI(
        title="lora_lab serve",
        version="1",
        lifespan=lifespan,
        description="Many adapters on shared base models, micro-batched. Errors: {error: {code, message}}.",
    )
    _add_error_handlers(app)
    _add_routes(app)

    app.add_middleware(RequestAccounting)  # request ids and the drain's counts (middleware.py)
    return app


def _error(request: Request, code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return error_response(request_id(request), code, message, headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return _error(request, 422, f"malformed request: {problems}")


def _require_ready(server: ServerState) -> None:
    if not server.ready:
        raise HTTPException(503, "the server is still loading its models", headers={"Retry-After": str(RETRY_AFTER_S)})


def _served(server: ServerState, name: str) -> Any:
    _require_ready(server)
    if name not in server.engine.models:
        raise HTTPException(404, f"no adapter {name!r}; loaded: {sorted(server.engine.models) or 'none'}")
    return server.engine.models[name]


def _fan_out_names(server: ServerState, adapters: list[str] | str) -> list[str]:
    """`adapters` as names: "*" is every loaded model, by name."""
    if adapters != "*":
        return list(adapters)
    _require_ready(server)
    if not server.engine.models:
        raise HTTPException(404, "adapters='*' but no model is loaded")
    return sorted(server.engine.models)


def _check_texts(server: ServerState, texts: list[str]) -> None:
    limits = server.settings
    if len(texts) > limits.max_texts_per_request:
        raise HTTPException(
            413,
            f"{len(texts)} texts in one request; the server takes at most max_texts_per_request="
            f"{limits.max_texts_per_request}: split the request",
        )
    if (longest := max(len(t) for t in texts)) > limits.max_text_chars:
        raise HTTPException(
            413,
            f"a text of {longest} characters; the server takes at most max_text_chars="
            f"{limits.max_text_chars}: shorten it",
        )


def _info(server: ServerState, name: str) -> AdapterInfo:
    served = server.engine.models[name]
    source, index = served.source, server.indexes.get(name)
    return AdapterInfo(
        name=name,
        labels=[served.id2label[i] for i in range(len(served.id2label))],
        base=str(source.backbone.get("name")),
        fingerprint=served.fingerprint,
        regime=source.regime,
        rank=source.info.get("rank"),
        test_acc=source.info.get("test_acc"),
        test_f1_macro=source.info.get("test_f1_macro"),
        trained_at=source.info.get("trained_at"),
        source=source.info.get("source", "job"),
        shares_base=served.adapter_id is not None,
        similar_index_rows=len(index.labels) if index is not None else 0,
        precision=server.engine.precision,
        stack_weight=served.stack.weight if served.stack is not None else None,
        telemetry=Telemetry(
            **server.metrics.quality.summary(
                name, source.train_counts, server.engine.texts_scored[name], server.engine.texts_long[name]
            )
        ),
    )


def _add_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz", summary="liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="readiness: every configured model loaded and warmed", responses=ERRORS)
    async def readyz(server: ServerState = Depends(state)) -> dict[str, Any]:
        if server.draining:
            raise HTTPException(503, "draining: shutting down", headers={"Retry-After": str(RETRY_AFTER_S)})
        if not server.ready:
            raise HTTPException(503, "loading models", headers={"Retry-After": str(RETRY_AFTER_S)})
        return {"status": "ready", "adapters": sorted(server.engine.models), "failed": server.failed}

    @app.get("/metrics", summary="Prometheus text format")
    async def metrics(server: ServerState = Depends(state)) -> Response:
        engine = server.engine  # its counters grow on the model thread: copied (dict() holds the GIL)
        body, content_type = server.metrics.render(
            server.batcher.waiting_by_adapter(),
            dict(engine.texts_scored),
            dict(engine.texts_long),
            {name: model.source.train_counts for name, model in list(engine.models.items())},
        )
        return Response(body, media_type=content_type)

    @app.post(
        "/v1/predict",
        response_model=PredictResponse | FanOutResponse,
        responses=ERRORS,
        dependencies=[Depends(api_client)],
    )
    async def predict(body: PredictRequest, server: ServerState = Depends(state)) -> PredictResponse | FanOutResponse:
        """Score the texts with `adapter`, or with each of `adapters` (fan-out: one block per adapter; the
        requests join the same batches, and a base tokenizes a text once for all its adapters)."""
        start = time.perf_counter()
        names = [body.adapter] if body.adapter is not None else _fan_out_names(server, body.adapters)
        models = {name: _served(server, name) for name in names}
        texts = body.all_texts
        _check_texts(server, texts)

        async def answer(name: str) -> PredictResponse:
            with server.metrics.track(name, "predict"):
                try:
                    probs = await server.batcher.predict(name, texts)
                except QueueFull as err:
                    raise HTTPException(
                        503, f"busy: {err}; retry shortly", headers={"Retry-After": str(RETRY_AFTER_S)}
                    ) from err
                except KeyError as err:
                    raise HTTPException(404, f"adapter {name!r} was unloaded while the request waited") from err
            predictions = [_prediction(row, models[name].id2label, body.top_k) for row in probs]
            server.metrics.quality.observe(name, [p.label for p in predictions], [p.score for p in predictions])
            latency_ms = 1000 * (time.perf_counter() - start)
            if server.settings.log_path:
                await asyncio.to_thread(_log_predictions, server.settings, name, texts, predictions, latency_ms)
            return PredictResponse(
                adapter=name, fingerprint=models[name].fingerprint, predictions=predictions, latency_ms=latency_ms
            )

        results = await asyncio.gather(*(answer(name) for name in names))
        if body.adapter is not None:
            return results[0]
        return FanOutResponse(results=list(results), latency_ms=1000 * (time.perf_counter() - start))

    @app.post("/v1/similar", response_model=SimilarResponse, responses=ERRORS, dependencies=[Depends(api_client)])
    async def similar(body: SimilarRequest, server: ServerState = Depends(state)) -> SimilarResponse:
        served = _served(server, body.adapter)
        _check_texts(server, [body.text])
        index = server.indexes.get(body.adapter)
        if index is None:
            raise HTTPException(
                404,
                f"adapter {body.adapter!r} has no similar-text index: its training data was not "
                "readable when it loaded (see the server log)",
            )
        with server.metrics.track(body.adapter, "similar"):
            query = await server.batcher.call(server.engine.embed, served.name, [body.text])
        return SimilarResponse(
            adapter=body.adapter, examples=[SimilarExample(**e) for e in index.nearest(query[0], body.k)]
        )

    @app.get("/v1/adapters", response_model=list[AdapterInfo])
    async def adapters(server: ServerState = Depends(state)) -> list[AdapterInfo]:
        return [_info(server, name) for name in sorted(server.engine.models)]

    @app.get("/v1/adapters/{name}", response_model=AdapterInfo, responses=ERRORS)
    async def adapter(name: str, server: ServerState = Depends(state)) -> AdapterInfo:
        _served(server, name)
        return _info(server, name)

    management = {"responses": {**ERRORS, **AUTH_ERRORS}, "dependencies": [Depends(admin)]}

    @app.put("/v1/adapters/{name}", response_model=AdapterInfo, **management)
    async def put_adapter(
        name: str, body: PutAdapter, request: Request, server: ServerState = Depends(state)
    ) -> AdapterInfo:
        """Load (or replace) `name` from a dir under adapter_roots: needs the admin token."""
        path = allowed_path(body.path, server.settings.adapter_roots)
        try:
            await server.load(name, str(path))
        except UserError as err:  # lora_lab's own message (what is wrong, the fix), its server paths masked
            log.warning("request %s: PUT /v1/adapters/%s from %s: %s", request_id(request), name, path, err)
            raise HTTPException(422, f"could not load adapter {name!r}: {masked(str(err), path, server)}") from err
        except Exception as err:  # an exception's text may name anything: the log has it, the client the id
            rid = request_id(request)
            log.exception("request %s: PUT /v1/adapters/%s from %s failed to load", rid, name, path)
            raise HTTPException(
                422, f"could not load adapter {name!r}: it failed to load; the server log has why, under request {rid}"
            ) from err
        return _info(server, name)

    @app.delete("/v1/adapters/{name}", **management)
    async def delete_adapter(name: str, server: ServerState = Depends(state)) -> dict[str, str]:
        """Stop serving `name`: needs the admin token."""
        _served(server, name)
        await server.unload(name)
        return {"deleted": name}


def masked(message: str, path: Path, server: ServerState) -> str:
    """message with the loaded path and the adapter roots as placeholders: no server path leaves."""
    message = message.replace(str(path), "<path>")
    for root in server.settings.adapter_roots:
        for form in (str(Path(root).expanduser().resolve()), root):
            message = message.replace(form, "<adapter root>")
    return message


def _prediction(probs: torch.Tensor, id2label: dict[int, str], top_k: int) -> Prediction:
    values, ids = probs.topk(min(top_k, probs.numel()))
    ranked = [LabelScore(label=id2label[i], probability=float(v)) for v, i in zip(values.tolist(), ids.tolist())]
    return Prediction(label=ranked[0].label, score=ranked[0].probability, top_k=ranked)


def _log_predictions(
    settings: Settings, adapter: str, texts: list[str], predictions: list[Prediction], latency_ms: float
) -> None:
    """The optional prediction log (JSONL); texts only with log_texts=true."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with open(settings.log_path, "a", encoding="utf-8") as f:
        for text, p in zip(texts, predictions):
            record = {"time": now, "adapter": adapter, "label": p.label, "score": p.score, "latency_ms": latency_ms}
            if settings.log_texts:
                record["text"] = text
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
