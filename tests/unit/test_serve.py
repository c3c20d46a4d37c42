"""The HTTP server on tiny jobs: endpoints and error codes, adapters of different label sets on one
base, mixed batches, hot load/delete under concurrent requests, /similar, metrics, the CLI.

Subprocess: only the command-line test runs `python -m lora_lab.serve`, because its exit code
2 and one-line stderr are what it tests; the server itself runs in-process (TestClient).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from lora_lab.config.hardware import cpu_has_native_bf16
from lora_lab.data.truncation import Truncation
from lora_lab.errors import ConfigError
from lora_lab.serve import batcher as batcher_module
from lora_lab.serve.__main__ import adapters_as_new_keys
from lora_lab.serve.app import ServerState, Settings, create_app
from lora_lab.serve.batcher import Batcher
from lora_lab.serve.engine import Engine, resolve_precision
from lora_lab.serve.sources import resolve_source
from tests.helpers import TICKETS
from tests.services import wait_for

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"


def _client(settings: Settings) -> TestClient:
    """Management on, with the admin token sent on every request, loading from under the temp dir
    (the auth itself: test_serve_auth.py)."""
    settings.management, settings.admin_token = True, ADMIN_TOKEN
    settings.adapter_roots = settings.adapter_roots or [tempfile.gettempdir()]
    return TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


def _wait_ready(client: TestClient) -> None:
    wait_for(lambda: client.get("/readyz").status_code == 200, 120, "the server to load its models")


@pytest.fixture(scope="module")
def jobs(served_jobs: dict[str, Path]) -> dict[str, Path]:
    return served_jobs


@pytest.fixture(scope="module")
def client(jobs: dict[str, Path]):
    settings = Settings(
        adapters={name: str(path) for name, path in jobs.items()}, max_texts_per_request=8, max_text_chars=200
    )
    with _client(settings) as c:
        _wait_ready(c)
        yield c


def test_predict_answers_each_adapter_with_its_own_labels_through_one_base(client: TestClient, jobs):
    sales = client.post(
        "/v1/predict", json={"texts": ["need 40 more boxes asap", "same as last order"], "adapter": "sales"}
    )
    tickets = client.post("/v1/predict", json={"text": TICKETS["refund"], "adapter": "tickets", "top_k": 2})
    assert sales.status_code == tickets.status_code == 200
    sales_labels = set(json.loads((jobs["sales"] / "labels.json").read_text())["id2label"].values())
    assert len(sales.json()["predictions"]) == 2 and {p["label"] for p in sales.json()["predictions"]} <= sales_labels
    answer = tickets.json()
    assert answer["predictions"][0]["label"] == "refund"  # a training text's wording: learned in 6 epochs
    top = answer["predictions"][0]["top_k"]
    assert len(top) == 2 and top[0]["probability"] >= top[1]["probability"] and answer["latency_ms"] > 0
    info = {a["name"]: a for a in client.get("/v1/adapters").json()}
    assert info["sales"]["fingerprint"] == info["tickets"]["fingerprint"]  # one base for both
    assert info["sales"]["shares_base"] and not info["full"]["shares_base"]
    assert set(info["tickets"]["labels"]) == set(TICKETS) and info["sales"]["regime"] == "lora"
    assert info["sales"]["test_acc"] == json.loads((jobs["sales"] / "metrics.json").read_text())["test/acc"]
    full = client.post("/v1/predict", json={"text": "need 40 more boxes", "adapter": "full"})
    assert full.status_code == 200 and full.json()["predictions"][0]["label"] in sales_labels


NATIVE_BF16 = pytest.mark.skipif(
    not cpu_has_native_bf16(), reason="this CPU has no native bf16: precision=bf16 is refused"
)


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=NATIVE_BF16)])
def test_a_mixed_batch_gives_each_adapter_its_own_logits(jobs, precision):
    engine = Engine(precision=precision)
    for name in ("sales", "tickets"):
        engine.load(name, resolve_source(jobs[name]))
    assert len(engine.bases) == 1
    base = next(iter(engine.bases.values()))
    assert base.mixable == {engine.models["sales"].adapter_id, engine.models["tickets"].adapter_id}
    texts = ["need 40 more boxes asap", TICKETS["login"], "a third text of another length entirely"]
    mixed = engine.predict([("sales", texts), ("tickets", texts), ("sales", texts[:1])])
    alone = [engine.predict([("sales", texts)])[0], engine.predict([("tickets", texts)])[0]]
    torch.testing.assert_close(mixed[0], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[1], alone[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[2], alone[0][:1], atol=1e-5, rtol=0)


@NATIVE_BF16
def test_bf16_serves_the_same_model_as_fp32_within_bf16_rounding(jobs):
    texts = [TICKETS["login"], TICKETS["billing"], "need 40 more boxes asap", "x"]
    probs = {}
    for precision in ("fp32", "bf16"):
        engine = Engine(precision=precision)
        engine.load("tickets", resolve_source(jobs["tickets"]))
        engine.load("full", resolve_source(jobs["full"]))  # a merged model alone: eager under bf16, traced in fp32
        probs[precision] = engine.predict([("tickets", texts), ("full", texts)])
    base = engine.models["tickets"].base
    # A pure bf16 model (no autocast): base and adapter weights in bf16; the heads read fp32 embeddings.
    assert {p.dtype for p in base.peft.parameters()} == {torch.bfloat16}
    assert {p.dtype for head in base.heads.values() for p in head.parameters()} == {torch.float32}
    for fp32, bf16 in zip(probs["fp32"], probs["bf16"]):
        assert not torch.equal(fp32, bf16)  # bf16 really ran
        torch.testing.assert_close(bf16, fp32, atol=2e-2, rtol=0)  # bf16 keeps 8 bits of mantissa: ~0.4% per op


def test_padding_to_a_multiple_changes_no_answer_and_the_warm_up_builds_every_width(jobs, monkeypatch):
    """bf16 pads widths to multiples of 8 (its kernels are built per shape); the pad is masked out, so
    in fp32, where sums are exact enough to tell, the padded engine answers as the unpadded one."""
    texts = [TICKETS["login"], "x", "need 40 more boxes asap", TICKETS["billing"] * 3]
    probs = {}
    for multiple in (1, 8):
        engine = Engine(precision="fp32")
        engine.pad_multiple = multiple
        engine.load("tickets", resolve_source(jobs["tickets"]))
        engine.load("full", resolve_source(jobs["full"]))  # a merged model alone pads the same way
        widths: list[int] = []
        forward = engine._forward

        def recorded(base, batch, names, forward=forward, widths=widths):
            widths.append(batch["input_ids"].shape[1])
            return forward(base, batch, names)

        monkeypatch.setattr(engine, "_forward", recorded)
        probs[multiple] = engine.predict([("tickets", texts), ("full", texts)])
        assert all(w % multiple == 0 for w in widths) and (multiple == 1) == any(w % 8 for w in widths)
        widths.clear()
        engine.warm("tickets")
        cut = engine.models["tickets"].truncation.max_length
        assert widths[1:] == ([] if multiple == 1 else list(range(8, cut + 1, 8)))  # after one real text
        assert engine.texts_scored["tickets"] == 0  # the warm-up is no traffic
    for padded, plain in zip(probs[8], probs[1]):
        torch.testing.assert_close(padded, plain, atol=1e-5, rtol=0)
    assert Engine(precision="fp32").pad_multiple == 1
    if cpu_has_native_bf16():
        assert Engine(precision="bf16").pad_multiple == 8


@pytest.mark.parametrize(
    "precision,quantize,message",
    [
        ("fp16", "none", "use one of auto, fp32, bf16"),
        ("auto", "int4", "use none or int8"),
        ("bf16", "int8", "pick one"),
    ],
)
def test_an_unsupported_precision_is_refused_with_the_choices(precision: str, quantize: str, message: str):
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve_precision(precision, quantize)
    assert resolve_precision("auto", "int8") == "int8"
    assert resolve_precision("auto", "none") == ("bf16" if cpu_has_native_bf16() else "fp32")


class _GatedEngine:
    """A stand-in model whose first forward holds until the test opens `gate` (the batcher's view of
    a long forward); `entered` says that forward has started."""

    def __init__(self) -> None:
        self.entered, self.gate, self.calls = threading.Event(), threading.Event(), 0

    def predict(self, requests):
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            assert self.gate.wait(60), "the test never opened the gate"
        return [torch.zeros(len(texts), 2) for _, texts in requests]


async def _until(condition, what: str) -> None:
    """Yield to the event loop until condition() holds (60 s: a bug, not a slow machine)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


def test_two_cohorts_of_clients_merge_into_full_batches(monkeypatch):
    """8 clients start, 24 more arrive while the 8's batch runs. Each client sends its next text as
    soon as it has an answer. The 24 must wait for the model anyway; the batcher waits for company
    from when the model comes free, so the 8 join them and every later batch holds all 32.

    No wall-clock luck: the first forward is held by a gate until the 24 are queued, and the batcher's
    clock is moved on (a 60 s offset) past the window at the two moments the story says time passed:
    before the batcher starts (the 8 have waited: their batch closes with the 8) and while the model
    holds the 8 (the 24 waited longer than the window: anchored on arrival they would run alone).
    The window itself is 30 s, so a returning client always makes it."""
    sizes: list[int] = []
    offset = [0.0]
    real = batcher_module.time.perf_counter
    clock = type("Clock", (), {"perf_counter": staticmethod(lambda: real() + offset[0])})
    monkeypatch.setattr(batcher_module, "time", clock)  # request arrivals keep the real clock

    async def scenario() -> None:
        engine = _GatedEngine()
        batcher = Batcher(
            engine,
            max_batch_size=32,
            max_wait_ms=30_000,
            max_queue=1000,
            on_batch=lambda names, texts, seconds: sizes.append(sum(texts)),
        )

        async def client(texts: int) -> None:
            for _ in range(texts):
                await batcher.predict("a", ["text"])

        # The 8 send 7 texts, the 24 send 6: both cohorts end on the same batch, so none is left short.
        first = [asyncio.create_task(client(7)) for _ in range(8)]
        await _until(lambda: batcher.queue.qsize() == 8, "the 8 first texts to queue")
        offset[0] += 60
        batcher.start()
        await _until(engine.entered.is_set, "the 8's batch to reach the model")
        later = [asyncio.create_task(client(6)) for _ in range(24)]
        await _until(lambda: batcher.queue.qsize() == 24, "the 24 to queue behind the running batch")
        offset[0] += 60
        engine.gate.set()
        await asyncio.wait_for(asyncio.gather(*first, *later), 60)
        await batcher.stop()

    asyncio.run(scenario())
    assert sizes == [8] + [32] * 6, sizes


def test_similar_returns_training_texts_of_the_right_label(client: TestClient):
    text = f"{TICKETS['login']} #3"  # a training row: its own nearest neighbour
    examples = client.post("/v1/similar", json={"text": text, "adapter": "tickets", "k": 3}).json()["examples"]
    assert examples[0]["label"] == "login" and examples[0]["similarity"] > 0.99
    assert all(e["label"] == "login" for e in examples)
    assert client.get("/v1/adapters/tickets").json()["similar_index_rows"] > 0


@pytest.mark.parametrize(
    "body,code,message",
    [
        ({"text": "x", "adapter": "nope"}, 404, "no adapter 'nope'; loaded: ['full', 'sales', 'tickets']"),
        ({"adapter": "sales"}, 422, "exactly one of `texts`"),
        ({"text": "x", "texts": ["y"], "adapter": "sales"}, 422, "exactly one of `texts`"),
        ({"text": "x", "adapter": "sales", "top_k": 0}, 422, "top_k"),
        ({"text": "x"}, 422, "adapter"),
        ({"texts": [], "adapter": "sales"}, 422, "empty"),
        ({"texts": ["x"] * 9, "adapter": "sales"}, 413, "max_texts_per_request=8"),
        ({"text": "x" * 201, "adapter": "sales"}, 413, "max_text_chars=200"),
        ({"text": "x", "adapter": "sales", "adapters": ["tickets"]}, 422, "exactly one of `adapter`"),
        ({"text": "x", "adapters": []}, 422, "at least one model, each once"),
        ({"text": "x", "adapters": ["sales", "sales"]}, 422, "at least one model, each once"),
        ({"text": "x", "adapters": "all"}, 422, "adapters"),
        ({"text": "x", "adapters": ["sales", "nope"]}, 404, "no adapter 'nope'"),
    ],
)
def test_client_errors_answer_with_a_code_and_a_message(client: TestClient, body: dict, code: int, message: str):
    response = client.post("/v1/predict", json=body)
    assert response.status_code == code
    error = response.json()["error"]
    assert error["code"] == code and message in error["message"]


def test_fan_out_answers_one_block_per_adapter_as_each_answers_alone(client: TestClient):
    texts = ["need 40 more boxes asap", TICKETS["refund"], "a third text, of another length entirely"]
    fanned = client.post("/v1/predict", json={"texts": texts, "adapters": ["tickets", "sales", "full"], "top_k": 100})
    assert fanned.status_code == 200
    results = fanned.json()["results"]
    assert [r["adapter"] for r in results] == ["tickets", "sales", "full"] and fanned.json()["latency_ms"] > 0
    for block in results:
        alone = client.post("/v1/predict", json={"texts": texts, "adapter": block["adapter"], "top_k": 100}).json()
        assert block["fingerprint"] == alone["fingerprint"]
        for ours, theirs in zip(block["predictions"], alone["predictions"]):
            assert ours["label"] == theirs["label"]
            probs = {s["label"]: s["probability"] for s in theirs["top_k"]}
            assert all(abs(s["probability"] - probs[s["label"]]) <= 1e-5 for s in ours["top_k"])
    everyone = client.post("/v1/predict", json={"text": texts[0], "adapters": "*"}).json()["results"]
    assert [r["adapter"] for r in everyone] == sorted(a["name"] for a in client.get("/v1/adapters").json())


def test_a_base_tokenizes_a_fanned_out_text_once(jobs, monkeypatch: pytest.MonkeyPatch):
    """Two adapters on one base with one truncation: the text is encoded once for both."""
    engine = Engine(precision="fp32")
    engine.load("a", resolve_source(jobs["sales"]))
    engine.load("b", resolve_source(jobs["sales"]))
    encoded: list[int] = []
    encode = Truncation.encode
    monkeypatch.setattr(
        Truncation, "encode", lambda self, tok, texts: encoded.append(len(texts)) or encode(self, tok, texts)
    )
    both = engine.predict([("a", ["need 40 more boxes"]), ("b", ["need 40 more boxes"])])
    assert encoded == [1]
    torch.testing.assert_close(both[0], both[1], atol=1e-6, rtol=0)


def test_a_body_that_is_not_json_is_422_not_500(client: TestClient):
    response = client.post("/v1/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"]["code"] == 422


def test_a_full_queue_answers_503_with_retry_after(jobs):
    with _client(Settings(adapters={"sales": str(jobs["sales"])}, max_queue=2)) as c:
        _wait_ready(c)
        response = c.post("/v1/predict", json={"texts": ["a", "b", "c"], "adapter": "sales"})
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "max_queue=2" in response.json()["error"]["message"]


def test_before_the_models_load_readyz_and_predict_answer_503(jobs, monkeypatch):
    gate = threading.Event()
    original = ServerState.load_all

    async def held(self, adapters):
        import asyncio

        await asyncio.to_thread(gate.wait, 30)
        await original(self, adapters)

    monkeypatch.setattr(ServerState, "load_all", held)
    with _client(Settings(adapters={"sales": str(jobs["sales"])})) as c:
        assert c.get("/healthz").json() == {"status": "ok"}  # liveness while loading
        assert c.get("/readyz").status_code == 503
        response = c.post("/v1/predict", json={"text": "x", "adapter": "sales"})
        assert response.status_code == 503 and "retry-after" in response.headers
        gate.set()
        _wait_ready(c)
        assert c.post("/v1/predict", json={"text": "x", "adapter": "sales"}).status_code == 200


def test_hot_load_and_delete_during_concurrent_requests_fail_no_request(jobs, monkeypatch):
    """Provably concurrent: a gate holds the model thread inside a client's forward; seven more
    requests queue behind it and the load of `tickets` starts (it holds the loading lock, waiting for
    the model thread) before the gate opens. Then loads, the live replacement of `sales`, the delete
    and the requests all run interleaved on the one model thread, and none may fail."""
    with _client(Settings(adapters={"sales": str(jobs["sales"])}, max_batch_size=1)) as c:
        _wait_ready(c)
        server = c.app.state.server
        entered, gate, forward = threading.Event(), threading.Event(), server.engine.predict

        def held(requests):  # only the model thread calls it: no race on the flag
            if not entered.is_set():
                entered.set()
                assert gate.wait(60), "the test never opened the gate"
            return forward(requests)

        monkeypatch.setattr(server.engine, "predict", held)

        def ask(i: int) -> int:
            return c.post("/v1/predict", json={"text": f"need {i} boxes asap", "adapter": "sales"}).status_code

        def manage() -> list[int]:
            return [
                c.put("/v1/adapters/tickets", json={"path": str(jobs["tickets"])}).status_code,
                c.put("/v1/adapters/sales", json={"path": str(jobs["sales"])}).status_code,  # replaced live
                c.delete("/v1/adapters/tickets").status_code,
            ]

        with ThreadPoolExecutor(8) as pool, ThreadPoolExecutor(1) as admin:
            answers = [pool.submit(ask, i) for i in range(40)]
            assert entered.wait(60), "no request reached the model"
            wait_for(lambda: server.batcher.waiting_by_adapter().get("sales") == 7, 60, "7 requests queued behind it")
            managing = admin.submit(manage)
            wait_for(server.loading.locked, 60, "the load of tickets to wait for the model thread")
            assert not managing.done() and not any(a.done() for a in answers)  # all in flight at once
            gate.set()
            codes = [a.result(timeout=120) for a in answers]
            assert managing.result(timeout=120) == [200, 200, 200]
        assert codes == [200] * 40
        assert c.get("/v1/adapters/tickets").status_code == 404
        assert [a["name"] for a in c.get("/v1/adapters").json()] == ["sales"]


def test_put_validates_before_loading(client: TestClient, jobs, tmp_path: Path):
    assert client.put("/v1/adapters/x", json={"path": str(tmp_path / "nope")}).status_code == 422
    pickled = tmp_path / "pickled"
    shutil.copytree(jobs["sales"], pickled)
    (pickled / "adapter" / "adapter_model.bin").write_bytes(b"\x80")
    response = client.put("/v1/adapters/x", json={"path": str(pickled)})
    assert response.status_code == 422 and "safetensors only" in response.json()["error"]["message"]
    no_labels = tmp_path / "no_labels"
    shutil.copytree(jobs["sales"], no_labels)
    (no_labels / "labels.json").unlink()
    assert "labels.json" in client.put("/v1/adapters/x", json={"path": str(no_labels)}).json()["error"]["message"]
    assert client.get("/v1/adapters/x").status_code == 404
    kept = tmp_path / "kept_checkpoints"  # keep_checkpoints=true: Lightning's .ckpt is no weight the job ships
    shutil.copytree(jobs["sales"], kept)
    (kept / "checkpoints").mkdir()
    (kept / "checkpoints" / "best.ckpt").write_bytes(b"\x80")
    assert client.put("/v1/adapters/kept", json={"path": str(kept)}).status_code == 200
    assert client.delete("/v1/adapters/kept").status_code == 200


def _samples(client: TestClient) -> dict[tuple[str, tuple], float]:
    """/metrics parsed: (sample name, its labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for s in family.samples
    }


def test_metrics_count_requests_batches_and_latency_per_adapter(client: TestClient):
    predict, sales = (("adapter", "sales"), ("endpoint", "predict")), (("adapter", "sales"),)
    keys = {
        "requests": ("lora_lab_requests_total", predict),
        "latencies": ("lora_lab_request_latency_seconds_count", predict),
        "batches": ("lora_lab_batch_texts_count", sales),
        "texts": ("lora_lab_batch_texts_sum", sales),
    }
    before = _samples(client)
    n = 5
    for i in range(n):  # one after another: each request is a batch of its own
        assert client.post("/v1/predict", json={"texts": [f"x {i}", f"y {i}"], "adapter": "sales"}).status_code == 200
    after = _samples(client)
    grew = {name: after[key] - before.get(key, 0.0) for name, key in keys.items()}
    assert grew == {"requests": n, "latencies": n, "batches": n, "texts": 2 * n}
    assert after[("lora_lab_queue_texts", sales)] == 0  # nothing waiting once all are answered


def test_the_page_is_served_by_the_app(client: TestClient):
    page = client.get("/")
    assert page.status_code == 200 and "lora_lab serve" in page.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text), "the page loads nothing from elsewhere"
    assert client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]


def test_the_command_line_takes_adapters_as_plain_keys_and_refuses_bad_ones(tmp_path: Path):
    assert adapters_as_new_keys(["adapters.sales=/a", "+adapters.x=/b", "port=1"]) == [
        "+adapters.sales=/a",
        "+adapters.x=/b",
        "port=1",
    ]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lora_lab.serve",
            f"adapters.sales={tmp_path / 'nope'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "no such directory" in out.stderr and "Traceback" not in out.stderr


def test_an_export_dir_serves_on_the_base_of_its_job_and_a_foreign_base_is_refused(
    client: TestClient, jobs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from lora_lab.export.bundle import export_job

    export_job(jobs["tickets"], tmp_path / "export")
    meta = json.loads((tmp_path / "export" / "lora_lab_export.json").read_text())
    assert "${" in meta["backbone_config"]["tokenizer"]  # the embedded tokenizer resolves where the export loads
    # The training rows (/v1/similar) are found under the serving machine's data dir.
    assert meta["dataset_config"]["path"] == "${oc.env:LORA_LAB_DATA_DIR,data}/tickets.csv"
    monkeypatch.setenv("LORA_LAB_DATA_DIR", str(jobs["tickets"].parent))
    loaded = client.put("/v1/adapters/shipped", json={"path": str(tmp_path / "export")})
    assert loaded.status_code == 200 and loaded.json()["source"] == "export"
    assert loaded.json()["fingerprint"] == client.get("/v1/adapters/tickets").json()["fingerprint"]  # the same base
    text = TICKETS["billing"]
    shipped = client.post("/v1/predict", json={"text": text, "adapter": "shipped"}).json()["predictions"][0]
    original = client.post("/v1/predict", json={"text": text, "adapter": "tickets"}).json()["predictions"][0]
    assert shipped["label"] == original["label"] and abs(shipped["score"] - original["score"]) < 1e-5
    assert (
        client.post("/v1/similar", json={"text": text, "adapter": "shipped", "k": 1}).json()["examples"][0]["label"]
        == "billing"
    )
    meta["base_fingerprint"] = "0" * 64
    (tmp_path / "export" / "lora_lab_export.json").write_text(json.dumps(meta))
    refused = client.put("/v1/adapters/foreign", json={"path": str(tmp_path / "export")})
    assert refused.status_code == 422 and "fingerprint 000000000000" in refused.json()["error"]["message"]
    assert client.delete("/v1/adapters/shipped").status_code == 200
