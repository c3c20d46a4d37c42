"""Load test of `python -m lora_lab.serve` on loopback: requests/s and latency percentiles.

    python scripts/load_test.py --job outputs/<date>/<time> [--seconds 8] [--max-requests 4000]

Every configuration starts its own server process on a free 127.0.0.1 port, waits for /readyz,
warms it, then runs 1, 8 and 32 concurrent clients, each sending single texts (Banking77 test
texts, from LORA_LAB_DATA_DIR) one request after another, for --seconds or --max-requests,
whichever ends first. Configurations, each against the same job's MiniLM LoRA adapter:
  batching on (max_wait_ms=5, max_batch_size=32) vs off (max_wait_ms=0, max_batch_size=1);
  one adapter vs three adapters on one base with mixed traffic (three copies of the adapter:
  three adapter ids, so batches really mix);
  fp32 vs int8 (quantize=int8 serves merged/ with int8 Linear layers).
Memory: the server's RSS with 1 and with 10 adapters attached (copies of the adapter) against
1 adapter + 10 x adapter bytes + 100 MB. Traffic goes to 127.0.0.1 only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
CLIENTS = (1, 8, 32)


@dataclass
class Run:
    config: str
    clients: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `python -m lora_lab.serve` process on loopback, stopped on exit."""

    def __init__(self, adapters: dict[str, Path], workdir: Path, **settings: object):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [f"adapters.{n}={p}" for n, p in adapters.items()]
        args += [f"{k}={v}" for k, v in settings.items()]
        args += ["host=127.0.0.1", f"port={self.port}", f"hydra.run.dir={workdir / f'server-{self.port}'}"]
        self.log = open(workdir / f"server-{self.port}.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([sys.executable, "-m", "lora_lab.serve", *args], cwd=REPO,
                                        stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}); see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("the server did not get ready in 600 s")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


async def load(url: str, adapters: list[str], texts: list[str], clients: int, seconds: float, max_requests: int) -> Run:
    """`clients` concurrent clients, each sending one text per request until the time or request budget ends."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds

    async def client(i: int, http: httpx.AsyncClient) -> None:
        nonlocal errors, sent
        while time.perf_counter() < deadline and sent < max_requests:
            body = {"text": texts[sent % len(texts)], "adapter": adapters[(sent + i) % len(adapters)], "top_k": 1}
            sent += 1
            start = time.perf_counter()
            response = await http.post(f"{url}/v1/predict", json=body)
            latencies.append(1000 * (time.perf_counter() - start))
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        elapsed = time.perf_counter() - start
    return Run("", clients, len(latencies), elapsed, latencies, errors)


def measure(name: str, server: Server, adapters: list[str], texts: list[str], args: argparse.Namespace) -> list[Run]:
    asyncio.run(load(server.url, adapters, texts, 4, 2, 200))  # warm-up: threads, allocator, caches
    runs = []
    for clients in CLIENTS:
        run = asyncio.run(load(server.url, adapters, texts, clients, args.seconds, args.max_requests))
        run.config = name
        runs.append(run)
        print(f"  {name:<28} {clients:>2} clients: {run.rps:7.1f} req/s, p50 {run.percentile(50):6.1f} ms, "
              f"p95 {run.percentile(95):6.1f} ms ({run.requests} requests, {run.errors} errors)", flush=True)
    return runs


def banking77_texts(limit: int = 2000) -> list[str]:
    path = Path(os.environ.get("LORA_LAB_DATA_DIR", REPO.parent / "shared" / "data")) / "banking77" / "test.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: Banking77's test split not found; set LORA_LAB_DATA_DIR")
    with path.open(newline="", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)][:limit]


def adapter_copies(job: Path, n: int, root: Path) -> dict[str, Path]:
    """n copies of a job dir (hard links where possible): n adapters of identical bytes, distinct names."""
    copies = {}
    for i in range(n):
        copy = root / f"copy{i}"
        if not copy.exists():
            shutil.copytree(job, copy, ignore=shutil.ignore_patterns("checkpoints", "csv", "wandb"),
                            copy_function=os.link if os.stat(job).st_dev == os.stat(root).st_dev else shutil.copy2)
        copies[f"a{i}"] = copy
    return copies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True, help="a finished MiniLM LoRA job dir (make train)")
    parser.add_argument("--seconds", type=float, default=8.0, help="per (configuration, clients) run")
    parser.add_argument("--max-requests", type=int, default=4000, help="per (configuration, clients) run")
    args = parser.parse_args()
    texts = banking77_texts()
    adapter_bytes = sum(p.stat().st_size for p in (args.job / "adapter").iterdir())
    with tempfile.TemporaryDirectory(prefix="lora_lab_load_") as tmp:
        root = Path(tmp)
        copies = adapter_copies(args.job, 10, root)
        one, three = {"a0": copies["a0"]}, {k: copies[k] for k in ("a0", "a1", "a2")}
        runs: list[Run] = []
        with Server(one, root) as server:
            runs += measure("batching on, 1 adapter", server, ["a0"], texts, args)
            rss_one = server.rss_mb()
        with Server(one, root, max_wait_ms=0, max_batch_size=1) as server:
            runs += measure("batching off, 1 adapter", server, ["a0"], texts, args)
        with Server(three, root) as server:
            runs += measure("batching on, 3 adapters mixed", server, list(three), texts, args)
        with Server(one, root, quantize="int8") as server:
            runs += measure("batching on, int8", server, ["a0"], texts, args)
        with Server(copies, root) as server:
            rss_ten = server.rss_mb()
    report(runs, rss_one, rss_ten, adapter_bytes)


def report(runs: list[Run], rss_one: float, rss_ten: float, adapter_bytes: int) -> None:
    print("\nconfiguration                  clients   req/s   p50 ms   p95 ms   p99 ms  requests  errors")
    for r in runs:
        print(f"{r.config:<30} {r.clients:>7} {r.rps:>7.1f} {r.percentile(50):>8.1f} {r.percentile(95):>8.1f} "
              f"{r.percentile(99):>8.1f} {r.requests:>9} {r.errors:>7}")
    by = {(r.config, r.clients): r for r in runs}
    on, off = by[("batching on, 1 adapter", 32)], by[("batching off, 1 adapter", 32)]
    mixed, int8 = by[("batching on, 3 adapters mixed", 32)], by[("batching on, int8", 1)]
    budget = rss_one + 10 * adapter_bytes / 2**20 + 100

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print(f"\n32 clients, batching on: {on.rps:.0f} req/s (target >= 400: {verdict(on.rps >= 400)}), "
          f"p95 {on.percentile(95):.0f} ms (target <= 150: {verdict(on.percentile(95) <= 150)})")
    print(f"batching on / off at 32 clients: x{on.rps / max(off.rps, 1e-9):.2f} (target >= 3: {verdict(on.rps >= 3 * off.rps)})")
    print(f"3 adapters mixed / 1 adapter at 32 clients: {100 * mixed.rps / max(on.rps, 1e-9):.0f}% "
          f"(target >= 80%: {verdict(mixed.rps >= 0.8 * on.rps)})")
    print(f"1 client, int8: p50 {int8.percentile(50):.1f} ms over HTTP (target <= 6: {verdict(int8.percentile(50) <= 6)})")
    print(f"RSS: 1 adapter {rss_one:.0f} MiB, 10 adapters {rss_ten:.0f} MiB; budget 1 adapter + 10 x "
          f"{adapter_bytes / 2**20:.2f} MiB + 100 MiB = {budget:.0f} MiB ({verdict(rss_ten <= budget)})")
    print(f"median p50 over all runs: {statistics.median(r.percentile(50) for r in runs):.1f} ms; "
          f"errors: {sum(r.errors for r in runs)}")


if __name__ == "__main__":
    main()
