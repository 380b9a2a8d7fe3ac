"""The load driver, the CPU meter and the summary of one measured cell."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

S = TypeVar("S")
J = TypeVar("J")
MAX_ERROR_SAMPLES = 5
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile of already-sorted values (0 for an empty list)."""
    if not sorted_values:
        return 0.0
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = (len(sorted_values) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


# ----------------------------------------------------------------------------- CPU meter
def _proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process in seconds (Linux /proc), None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


Snapshot = dict[str, dict[int, float]]


class CpuMeter:
    """CPU seconds used by a gunicorn master and its workers ("app") and by every PostgreSQL process ("pg")."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid

    def snapshot(self) -> Snapshot:
        groups: dict[str, list[int]] = {"pg": _postgres_pids()}
        if self.server_pid is not None:
            groups["app"] = [self.server_pid, *_descendants(self.server_pid)]
        snap: Snapshot = {}
        for name, pids in groups.items():
            snap[name] = {}
            for pid in pids:
                cpu = _proc_cpu_s(pid)
                if cpu is not None:
                    snap[name][pid] = cpu
        return snap

    @staticmethod
    def delta(before: Snapshot, after: Snapshot) -> dict[str, float]:
        return {
            name: sum(cpu - before.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items())
            for name, pids in after.items()
        }


# ----------------------------------------------------------------------------- load driver
@dataclass
class Sample:
    """One request (or bare-SQL transaction)."""

    latency_s: float
    status: int  # HTTP status; 0 = transport error. Bare SQL: 1 committed, 2 short, 0 error
    t_end_s: float = 0.0  # when it finished, from the start of the run
    units: int = 0  # units reserved (201 / committed)
    code: str | None = None  # the `code` of a 409 body
    error: str | None = None  # set: the request counts as failed, and this says why
    detail: Any = None  # what the benchmark wants to keep of the answer


@dataclass
class Run:
    samples: list[Sample]
    wall_s: float  # from the start until the last client thread finished
    cpu_s: dict[str, float]  # this process ("client") and, with a meter, "app" and "pg"


class Clients(Generic[S]):
    """A fixed set of client threads, each with its own state (a KeepAlive client, a requests.Session
    or a psycopg connection), that all start at once behind a barrier."""

    def __init__(self, states: Sequence[S]) -> None:
        self.states = list(states)

    def run(
        self, seconds: float, step: Callable[[S, int, int], Sample], meter: CpuMeter | None = None
    ) -> tuple[list[Sample], float, dict[str, float]]:
        """Every thread calls step(state, thread_index, seq) until `seconds` have passed.

        A request in flight at the deadline is finished and counted.
        """
        deadline: list[float] = []

        def loop(state: S, index: int, began: float, out: list[Sample]) -> None:
            seq = 0
            while time.perf_counter() < deadline[0]:
                out.append(self._one(step, state, index, seq, began))
                seq += 1

        run = self._drive(loop, meter, lambda began: deadline.append(began + seconds))
        return run.samples, run.wall_s, run.cpu_s

    def run_jobs(
        self, jobs: Iterable[J], step: Callable[[S, int, J], Sample], meter: CpuMeter | None = None
    ) -> tuple[list[Sample], float, dict[str, float]]:
        """The threads share out `jobs`: each calls step(state, thread_index, job) until none are left."""
        work: queue.SimpleQueue[J] = queue.SimpleQueue()
        for job in jobs:
            work.put(job)

        def loop(state: S, index: int, began: float, out: list[Sample]) -> None:
            while True:
                try:
                    job = work.get_nowait()
                except queue.Empty:
                    return
                out.append(self._one(step, state, index, job, began))

        run = self._drive(loop, meter, lambda _began: None)
        return run.samples, run.wall_s, run.cpu_s

    @staticmethod
    def _one(step: Callable[[S, int, Any], Sample], state: S, index: int, arg: Any, began: float) -> Sample:
        t0 = time.perf_counter()
        try:
            sample = step(state, index, arg)
        except Exception as exc:  # a broken response must not silently end the thread
            sample = Sample(time.perf_counter() - t0, 0, error=f"client error: {type(exc).__name__}: {exc}")
        sample.t_end_s = time.perf_counter() - began
        return sample

    def _drive(
        self,
        loop: Callable[[S, int, float, list[Sample]], None],
        meter: CpuMeter | None,
        on_start: Callable[[float], None],
    ) -> Run:
        n = len(self.states)
        gate = threading.Barrier(n + 1)
        results: list[list[Sample]] = [[] for _ in range(n)]
        clock: list[float] = []

        def worker(index: int) -> None:
            gate.wait()
            loop(self.states[index], index, clock[0], results[index])

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        snap0 = meter.snapshot() if meter else {}
        cpu0 = time.process_time()
        clock.append(time.perf_counter())
        on_start(clock[0])
        gate.wait()
        for t in threads:
            t.join()
        wall = time.perf_counter() - clock[0]
        cpu = {"client": time.process_time() - cpu0}
        if meter:
            cpu.update(CpuMeter.delta(snap0, meter.snapshot()))
        return Run([s for r in results for s in r], wall, cpu)


# ----------------------------------------------------------------------------- summary
def first_errors(errors: Iterable[str | None], limit: int = MAX_ERROR_SAMPLES) -> list[str]:
    """The first `limit` distinct error texts."""
    out: list[str] = []
    for e in errors:
        if e and e not in out:
            out.append(e)
            if len(out) >= limit:
                break
    return out


@dataclass
class Cell:
    """The figures of one (phase, clients) cell."""

    phase: str
    clients: int
    seconds: float
    wall_s: float
    requests: int
    ok: int  # requests answered with ok_status (201 orders, 200 reads, committed bare SQL)
    conflicts: int  # answered with conflict_status (409; short bare-SQL transactions)
    other: int
    ok_per_s: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu_pct: dict[str, float]  # CPU over the cell, % of one core: client, app (gunicorn), pg
    units: int  # units reserved by the successful requests
    first_conflict_s: float | None = None
    ok_per_s_until_conflict: float | None = None  # successes per second before the first conflict
    ok_p50_ms: float = 0.0  # latencies of the successful requests only
    ok_p99_ms: float = 0.0
    conflict_codes: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    warmup_requests: int = 0
    warmup_units: int = 0
    stock: dict[str, Any] = field(default_factory=dict)


def summarise(
    phase: str,
    clients: int,
    seconds: float,
    samples: list[Sample],
    wall: float,
    cpu_s: dict[str, float],
    ok_status: int,
    conflict_status: int | None = None,
) -> Cell:
    latencies = sorted(s.latency_s * 1000.0 for s in samples)
    ok = [s for s in samples if s.status == ok_status and s.error is None]
    conflicts = [s for s in samples if conflict_status is not None and s.status == conflict_status]
    other = len(samples) - len(ok) - len(conflicts)
    codes: dict[str, int] = {}
    for s in conflicts:
        codes[s.code or "?"] = codes.get(s.code or "?", 0) + 1
    first_conflict = min((s.t_end_s for s in conflicts), default=None)
    ok_latencies = sorted(s.latency_s * 1000.0 for s in ok)
    return Cell(
        phase=phase,
        clients=clients,
        seconds=seconds,
        wall_s=wall,
        requests=len(samples),
        ok=len(ok),
        conflicts=len(conflicts),
        other=other,
        ok_per_s=len(ok) / wall if wall > 0 else 0.0,
        requests_per_s=len(samples) / wall if wall > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else 0.0,
        cpu_pct={k: 100.0 * v / wall if wall > 0 else 0.0 for k, v in cpu_s.items()},
        units=sum(s.units for s in ok),
        first_conflict_s=first_conflict,
        ok_per_s_until_conflict=(
            sum(1 for s in ok if s.t_end_s <= first_conflict) / first_conflict if first_conflict else None
        ),
        ok_p50_ms=percentile(ok_latencies, 50),
        ok_p99_ms=percentile(ok_latencies, 99),
        conflict_codes=codes,
        error_samples=first_errors(s.error for s in samples),
    )
