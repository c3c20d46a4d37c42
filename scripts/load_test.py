"""Load test of `python -m lora_lab.serve` on loopback: requests/s and latency percentiles.

    python scripts/load_test.py --job outputs/<date>/<time> [--seconds 8] [--max-requests 4000]
        [--parts table drain overhead mixed] [--against <another checkout>]

Parts: `table` (below; with --against, each configuration also from that checkout, right after this
one's), `drain` (SIGTERM under 32 clients, --drain-runs fresh servers: taken vs answered requests),
`overhead` (--code vs --against in alternating rounds: what authentication and telemetry cost),
`mixed` (one adapter vs three mixed, per precision, in alternating rounds), `precision` (fp32 vs bf16,
one adapter, in alternating rounds; needs a CPU with native bf16).

Every configuration starts its own server process on a free 127.0.0.1 port, waits for /readyz,
warms it, then runs 1, 8 and 32 concurrent clients, each sending single texts (Banking77 test
texts, from LORA_LAB_DATA_DIR) one request after another, for --seconds or --max-requests,
whichever ends first. Configurations, each against the same job's MiniLM LoRA adapter:
  batching on (max_wait_ms=5, max_batch_size=32) vs off (max_wait_ms=0, max_batch_size=1);
  one adapter vs three adapters on one base with mixed traffic (three copies of the adapter:
  three adapter ids, so batches really mix);
  fp32 vs bf16 (precision=bf16: a pure bf16 model; the CPU needs native bf16) vs int8 (quantize=int8
  serves merged/ with int8 Linear layers).
Memory: the server's RSS with 1 and with 10 adapters attached (copies of the adapter) against
1 adapter + 10 x adapter bytes + 100 MB. Traffic goes to 127.0.0.1 only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
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
    client_cpu_s: float = 0.0  # the load generator's own CPU time: what it took from the server

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

    def __init__(
        self, adapters: dict[str, Path], workdir: Path, code: Path = REPO, env: dict | None = None, **settings: object
    ):
        """`code`: the checkout whose lora_lab serves (another one for --against), with this venv's packages."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [f"adapters.{n}={p}" for n, p in adapters.items()]
        args += [f"{k}={v}" for k, v in settings.items()]
        args += ["host=127.0.0.1", f"port={self.port}", f"hydra.run.dir={workdir / f'server-{self.port}'}"]
        self.log = open(workdir / f"server-{self.port}.log", "w")  # closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lora_lab.serve", *args],
            cwd=code,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(code), **(env or {})},
        )

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
        self.process.terminate()  # a no-op once a drain run's SIGTERM has ended it
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


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs prepared JSON bodies.

    Hand-rolled on asyncio streams, not httpx: the load generator shares this machine's 2 cores
    with the server, and httpx spent ~1.7 ms of CPU per request (0.24 cores at 138 req/s), a
    quarter of what the server had left. This costs a few tens of microseconds per request.
    """

    def __init__(self, port: int, headers: bytes = b""):
        self.port = port
        self.headers = headers  # extra header lines, each ending in \r\n (an API token)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        """The response's status code (its body is read and dropped). ConnectionRefusedError: nothing
        listens; ConnectionResetError: the server closed the connection before answering."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n%s"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.headers, len(body), body)
        )
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionResetError("closed before an answer")
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def load(
    port: int,
    adapters: list[str],
    texts: list[str],
    clients: int,
    seconds: float,
    max_requests: int,
    headers: bytes = b"",
) -> Run:
    """`clients` concurrent clients, each sending one text per request until the time or request budget ends."""
    bodies = [json.dumps({"text": t, "adapter": a, "top_k": 1}).encode() for t in texts for a in adapters]
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds

    async def client(i: int) -> None:
        nonlocal errors, sent
        connection = Connection(port, headers)
        try:
            while time.perf_counter() < deadline and sent < max_requests:
                body = bodies[(sent * len(adapters) + i) % len(bodies)]  # texts in turn, adapters mixed
                sent += 1
                start = time.perf_counter()
                status = await connection.post("/v1/predict", body)
                latencies.append(1000 * (time.perf_counter() - start))
                errors += status != 200
        finally:
            connection.close()

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return Run("", clients, len(latencies), time.perf_counter() - start, latencies, errors, time.process_time() - cpu)


def measure(name: str, server: Server, adapters: list[str], texts: list[str], args: argparse.Namespace) -> list[Run]:
    asyncio.run(load(server.port, adapters, texts, 4, 2, 200))  # warm-up: threads, allocator, caches
    runs = []
    for clients in CLIENTS:
        run = asyncio.run(load(server.port, adapters, texts, clients, args.seconds, args.max_requests))
        run.config = name
        runs.append(run)
        print(
            f"  {name:<28} {clients:>2} clients: {run.rps:7.1f} req/s, p50 {run.percentile(50):6.1f} ms, "
            f"p95 {run.percentile(95):6.1f} ms ({run.requests} requests, {run.errors} errors)",
            flush=True,
        )
    return runs


async def drain_run(port: int, signal_server, adapter: str, texts: list[str], clients: int) -> Counter[str]:
    """`clients` keep-alive clients under load; `signal_server()` once they have 4 answers each on
    average; each client then goes on until it is refused (connection refused, or 503). Returns what
    each request got: a status code, "refused", or "closed before an answer"."""
    outcomes: Counter[str] = Counter()
    enough = asyncio.Event()
    bodies = [json.dumps({"text": t, "adapter": adapter, "top_k": 1}).encode() for t in texts]

    async def client(i: int) -> None:
        connection, n = Connection(port), i
        while True:
            try:
                outcome = str(await connection.post("/v1/predict", bodies[n % len(bodies)]))
            except ConnectionRefusedError:
                outcome = "refused"
            except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError):
                outcome = "closed before an answer"  # reopened on the next request
                connection.close()
            n += clients
            outcomes[outcome] += 1
            if outcomes["200"] >= 4 * clients:
                enough.set()
            if outcome in ("refused", "503"):
                connection.close()
                return

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    await asyncio.wait_for(enough.wait(), 600)
    signal_server()
    await asyncio.wait_for(asyncio.gather(*tasks), 600)
    return outcomes


@dataclass
class Drain:
    taken: int  # the server's own counts, from its "drained: ..." log line
    answered: int
    outcomes: Counter[str]  # what the clients got

    @property
    def lost(self) -> int:
        """Taken but unanswered, or answered but not received as a 200."""
        return max(self.taken - self.answered, self.taken - self.outcomes["200"], 0)


def drain(adapter: Path, root: Path, texts: list[str], runs: int) -> list[Drain]:
    """`runs` times: a fresh server (precision auto), 32 clients, SIGTERM mid-load."""
    results = []
    for i in range(runs):
        with Server({"a0": adapter}, root, drain_seconds=120) as server:
            outcomes = asyncio.run(
                drain_run(server.port, lambda: server.process.send_signal(signal.SIGTERM), "a0", texts, 32)
            )
            server.process.wait(timeout=600)
            log = Path(server.log.name).read_text()
        found = re.search(r"drained: (\d+) requests accepted, (\d+) answered", log)
        taken, answered = map(int, found.groups()) if found else (-1, -1)
        results.append(Drain(taken, answered, outcomes))
        print(f"  drain run {i + 1}: taken {taken}, answered {answered}, clients saw {dict(outcomes)}", flush=True)
    return results


@dataclass
class Side:
    """One server of a paired comparison, the adapters its traffic names and its extra headers."""

    server: Server
    adapters: list[str]
    headers: bytes = b""


def paired(sides: dict[str, Side], texts: list[str], args: argparse.Namespace) -> dict[str, tuple[list, list]]:
    """Alternating rounds (ABBA: no side always first) of 1 and 32 clients on live servers; per side,
    each round's 1-client p50 and 32-client req/s."""
    out: dict[str, tuple[list, list]] = {name: ([], []) for name in sides}
    for side in sides.values():  # warm-up
        asyncio.run(load(side.server.port, side.adapters, texts, 4, 2, 200, side.headers))
    for r in range(args.rounds):
        order = list(sides.items()) if r % 2 == 0 else list(sides.items())[::-1]
        for name, side in order:
            one = asyncio.run(
                load(side.server.port, side.adapters, texts, 1, args.seconds, args.max_requests, side.headers)
            )
            many = asyncio.run(
                load(side.server.port, side.adapters, texts, 32, args.seconds, args.max_requests, side.headers)
            )
            assert one.errors == many.errors == 0, f"{name}: errors"
            out[name][0].append(one.percentile(50))
            out[name][1].append(many.rps)
            print(
                f"  round {r + 1} {name:10}: 1 client p50 {one.percentile(50):.1f} ms, 32 clients {many.rps:.0f} req/s"
            )
    return out


def ratio(a: list[float], b: list[float]) -> float:
    """The median of the per-round ratios a / b (the VM's speed drifts between rounds)."""
    return statistics.median(x / y for x, y in zip(a, b))


def overhead(adapter: Path, root: Path, against: Path, texts: list[str], args: argparse.Namespace) -> None:
    """`args.code` (this checkout by default) with an API token required, and its telemetry, vs `against`,
    a checkout without them, both precision=auto."""
    token = "load-test-api-token-0123456789"
    this = Server({"a0": adapter}, root, code=args.code, env={"LORA_LAB_API_TOKENS": token})
    other = Server({"a0": adapter}, root, code=against)
    with this, other:
        got = paired(
            {
                "this": Side(this, ["a0"], f"Authorization: Bearer {token}\r\n".encode()),
                "against": Side(other, ["a0"]),
            },
            texts,
            args,
        )
    (p50, rps), (p50_other, rps_other) = got["this"], got["against"]
    med = statistics.median
    print(
        f"\nauthentication + telemetry vs {against}: 1 client p50 {med(p50):.1f} vs {med(p50_other):.1f} ms "
        f"(x{ratio(p50, p50_other):.3f} per round, median); 32 clients {med(rps):.0f} vs {med(rps_other):.0f} "
        f"req/s (x{ratio(rps, rps_other):.3f}); target: at most 3% either way"
    )


def precisions(adapter: Path, root: Path, texts: list[str], args: argparse.Namespace) -> None:
    """fp32 vs bf16 (precision=auto's pick on a CPU with native bf16), one adapter, in alternating rounds."""
    fp32 = Server({"a0": adapter}, root, code=args.code, precision="fp32")
    bf16 = Server({"a0": adapter}, root, code=args.code, precision="bf16")
    with fp32, bf16:
        got = paired({"fp32": Side(fp32, ["a0"]), "bf16": Side(bf16, ["a0"])}, texts, args)
    (p50_b, rps_b), (p50_f, rps_f) = got["bf16"], got["fp32"]
    med = statistics.median
    print(
        f"\nbf16 vs fp32: 1 client p50 {med(p50_b):.1f} vs {med(p50_f):.1f} ms (x{ratio(p50_b, p50_f):.3f} per round, "
        f"median; target <= 1); 32 clients {med(rps_b):.0f} vs {med(rps_f):.0f} req/s (x{ratio(rps_b, rps_f):.2f})"
    )


def mixed(copies: dict[str, Path], root: Path, texts: list[str], args: argparse.Namespace) -> None:
    """Per precision: one adapter vs three on one base with mixed traffic, in alternating rounds."""
    three = {k: copies[k] for k in ("a0", "a1", "a2")}
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    native_bf16 = "avx512_bf16" in cpu or "amx_bf16" in cpu  # else the server refuses precision=bf16
    for precision in ("fp32", "bf16") if native_bf16 else ("fp32",):
        one_server = Server({"a0": copies["a0"]}, root, code=args.code, precision=precision)
        three_server = Server(three, root, code=args.code, precision=precision)
        with one_server, three_server:
            got = paired({"one": Side(one_server, ["a0"]), "3 mixed": Side(three_server, list(three))}, texts, args)
        rps_one, rps_mixed = got["one"][1], got["3 mixed"][1]
        print(
            f"\n{precision}: 3 adapters mixed / 1 adapter at 32 clients: {statistics.median(rps_mixed):.0f} vs "
            f"{statistics.median(rps_one):.0f} req/s, {ratio(rps_mixed, rps_one):.0%} (median of per-round "
            f"ratios; target >= 80%)\n"
        )


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
            shutil.copytree(
                job,
                copy,
                ignore=shutil.ignore_patterns("checkpoints", "csv", "wandb"),
                copy_function=os.link if os.stat(job).st_dev == os.stat(root).st_dev else shutil.copy2,
            )
        copies[f"a{i}"] = copy
    return copies


# (name, adapters served, traffic's adapters, server settings). fp32 and bf16 side by side: this
# CPU has native bf16, so precision=auto (the default) serves bf16 here.
BATCHING_OFF = {"max_wait_ms": 0, "max_batch_size": 1}


def configurations(copies: dict[str, Path]) -> list[tuple[str, dict[str, Path], dict[str, object]]]:
    one, three = {"a0": copies["a0"]}, {k: copies[k] for k in ("a0", "a1", "a2")}
    return [
        ("fp32, batching on", one, {"precision": "fp32"}),
        ("fp32, batching off", one, {"precision": "fp32", **BATCHING_OFF}),
        ("fp32, 3 adapters mixed", three, {"precision": "fp32"}),
        ("bf16, batching on", one, {"precision": "bf16"}),
        ("bf16, batching off", one, {"precision": "bf16", **BATCHING_OFF}),
        ("bf16, 3 adapters mixed", three, {"precision": "bf16"}),
        ("int8, batching on", one, {"quantize": "int8"}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True, help="a finished MiniLM LoRA job dir (make train)")
    parser.add_argument("--seconds", type=float, default=8.0, help="per (configuration, clients) run")
    parser.add_argument("--max-requests", type=int, default=4000, help="per (configuration, clients) run")
    parser.add_argument(
        "--parts", nargs="+", choices=("table", "drain", "overhead", "mixed", "precision"), default=["table", "drain"]
    )
    parser.add_argument("--drain-runs", type=int, default=5, help="SIGTERM under 32 clients, a fresh server each")
    parser.add_argument(
        "--against", type=Path, help="another checkout (git worktree add ...): table runs each configuration on both"
    )
    parser.add_argument("--rounds", type=int, default=3, help="overhead, mixed: alternating rounds")
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose server is measured")
    args = parser.parse_args()
    if "overhead" in args.parts and args.against is None:
        parser.error("--parts overhead needs --against <a checkout without authentication and telemetry>")
    texts = banking77_texts()
    adapter_bytes = sum(p.stat().st_size for p in (args.job / "adapter").iterdir())
    with tempfile.TemporaryDirectory(prefix="lora_lab_load_") as tmp:
        root = Path(tmp)
        copies = adapter_copies(args.job, 10, root)
        args.code = args.code.resolve()
        if "mixed" in args.parts:
            mixed(copies, root, texts, args)
        if "precision" in args.parts:
            precisions(copies["a0"], root, texts, args)
        if "overhead" in args.parts:
            overhead(copies["a0"], root, args.against.resolve(), texts, args)
        if "table" in args.parts:
            runs: list[Run] = []
            paired: list[Run] = []  # the same configurations on --against, each right after this checkout's
            for name, served, settings in configurations(copies):
                with Server(served, root, code=args.code, **settings) as server:
                    if name == "fp32, batching on":
                        rss_one = server.rss_mb()  # loaded and warmed, before traffic: as the 10-adapter one
                    runs += measure(name, server, list(served), texts, args)
                if args.against is not None:
                    with Server(served, root, code=args.against.resolve(), **settings) as server:
                        paired += measure(f"{name} [against]", server, list(served), texts, args)
            with Server(copies, root, code=args.code, precision="fp32") as server:
                rss_ten = server.rss_mb()
        drains = drain(copies["a0"], root, texts, args.drain_runs) if "drain" in args.parts else []
    if "table" in args.parts:
        report(runs + paired, rss_one, rss_ten, adapter_bytes)
        for mine, theirs in zip(runs, paired):
            print(
                f"{mine.config:<30} {mine.clients:>2} clients: {mine.rps:6.1f} vs {theirs.rps:6.1f} req/s against "
                f"(x{mine.rps / max(theirs.rps, 1e-9):.2f}), "
                f"p50 {mine.percentile(50):.1f} vs {theirs.percentile(50):.1f} ms"
            )
    if drains:
        taken, answered = sum(d.taken for d in drains), sum(d.answered for d in drains)
        print(
            f"drain, SIGTERM under 32 clients, {len(drains)} runs: taken {taken}, answered {answered}, "
            f"lost {sum(d.lost for d in drains)} (target 0); per run taken {[d.taken for d in drains]}"
        )


def report(runs: list[Run], rss_one: float, rss_ten: float, adapter_bytes: int) -> None:
    print("\nconfiguration                  clients   req/s   p50 ms   p95 ms   p99 ms  requests  errors  client cores")
    for r in runs:
        print(
            f"{r.config:<30} {r.clients:>7} {r.rps:>7.1f} {r.percentile(50):>8.1f} {r.percentile(95):>8.1f} "
            f"{r.percentile(99):>8.1f} {r.requests:>9} {r.errors:>7} {r.client_cpu_s / r.seconds:>13.2f}"
        )
    by = {(r.config, r.clients): r for r in runs}
    budget = rss_one + 10 * adapter_bytes / 2**20 + 100

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print()
    for precision in ("fp32", "bf16"):
        on, off = by[(f"{precision}, batching on", 32)], by[(f"{precision}, batching off", 32)]
        mixed = by[(f"{precision}, 3 adapters mixed", 32)]
        print(
            f"{precision}: 32 clients, batching on: {on.rps:.0f} req/s (target >= 400: {verdict(on.rps >= 400)}), "
            f"p95 {on.percentile(95):.0f} ms (target <= 150: {verdict(on.percentile(95) <= 150)})"
        )
        print(
            f"{precision}: batching on / off at 32 clients: x{on.rps / max(off.rps, 1e-9):.2f} "
            f"(target >= 3: {verdict(on.rps >= 3 * off.rps)})"
        )
        print(
            f"{precision}: 3 adapters mixed / 1 adapter at 32 clients: {100 * mixed.rps / max(on.rps, 1e-9):.0f}% "
            f"(target >= 80%: {verdict(mixed.rps >= 0.8 * on.rps)})"
        )
    int8 = by[("int8, batching on", 1)]
    print(
        f"1 client, int8: p50 {int8.percentile(50):.1f} ms over HTTP (target <= 6: {verdict(int8.percentile(50) <= 6)})"
    )
    print(
        f"RSS (fp32): 1 adapter {rss_one:.0f} MiB, 10 adapters {rss_ten:.0f} MiB; budget 1 adapter + 10 x "
        f"{adapter_bytes / 2**20:.2f} MiB + 100 MiB = {budget:.0f} MiB ({verdict(rss_ten <= budget)})"
    )
    print(
        f"median p50 over all runs: {statistics.median(r.percentile(50) for r in runs):.1f} ms; "
        f"errors: {sum(r.errors for r in runs)}"
    )


if __name__ == "__main__":
    main()
