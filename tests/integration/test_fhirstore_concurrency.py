"""Concurrency of the SQLite FHIR store: racing conditional creates (threads and separate processes on
one file) must create each resource exactly once; racing updates must not lose versions."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
from shared.fhirstore.errors import VersionConflict
from tests.unit.fhirstore.fhirstore_fixtures import NHS, patient

pytestmark = pytest.mark.timeout(120)

IDENTIFIERS = [f"99{n:08d}" for n in range(15)]


def _criteria(nhs: str) -> str:
    return f"identifier={NHS}|{nhs}"


def _race_creates(path: str, barrier: Any, worker: int) -> list[tuple[str, str, bool]]:
    repo = SqliteFhirRepository(Path(path), busy_timeout=60)
    try:
        outcomes = []
        barrier.wait()
        for nhs in IDENTIFIERS:
            result = repo.create(patient(nhs=nhs, given=f"W{worker}"), if_none_exist=_criteria(nhs))
            outcomes.append((nhs, result.id, result.created))
        return outcomes
    finally:
        repo.close()


def _process_worker(path: str, barrier: Any, worker: int, results: Any) -> None:
    try:
        results.put(("ok", _race_creates(path, barrier, worker)))
    except BaseException as exc:
        results.put(("error", repr(exc)))


def _check_exactly_once(path: Path, outcomes: list[tuple[str, str, bool]], workers: int) -> None:
    assert len(outcomes) == workers * len(IDENTIFIERS)
    created = Counter(nhs for nhs, _, was_created in outcomes if was_created)
    assert created == Counter(IDENTIFIERS), "exactly one creator per identifier"
    for nhs in IDENTIFIERS:
        assert len({rid for n, rid, _ in outcomes if n == nhs}) == 1, "every caller got the same resource"
    repo = SqliteFhirRepository(path)
    try:
        assert repo.search("Patient", [], count=500).total == len(IDENTIFIERS)
        for nhs in IDENTIFIERS:
            assert repo.search("Patient", [("identifier", _criteria(nhs).split("=", 1)[1])]).total == 1
    finally:
        repo.close()


def test_threads_racing_if_none_exist_create_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    SqliteFhirRepository(path).close()
    workers = 6
    barrier = threading.Barrier(workers, timeout=60)  # a worker that fails early breaks it for the rest
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(_race_creates, str(path), barrier, n) for n in range(workers)]
        outcomes = [outcome for f in futures for outcome in f.result(timeout=90)]  # re-raises a failure
    _check_exactly_once(path, outcomes, workers)


def test_threads_sharing_one_repository(tmp_path: Path) -> None:
    """One instance used by many threads (the Functions worker case) behaves the same."""
    path = tmp_path / "shared.db"
    repo = SqliteFhirRepository(path)
    workers = 6
    barrier = threading.Barrier(workers)
    outcomes: list[tuple[str, str, bool]] = []
    lock = threading.Lock()

    def run(worker: int) -> None:
        barrier.wait()
        for nhs in IDENTIFIERS:
            result = repo.create(patient(nhs=nhs), if_none_exist=_criteria(nhs))
            with lock:
                outcomes.append((nhs, result.id, result.created))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    repo.close()
    _check_exactly_once(path, outcomes, workers)


def test_processes_racing_if_none_exist_create_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    SqliteFhirRepository(path).close()
    context = multiprocessing.get_context("spawn")
    workers = 2
    barrier = context.Barrier(workers)
    results = context.Queue()
    processes = [
        context.Process(target=_process_worker, args=(str(path), barrier, n, results)) for n in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        collected = [results.get(timeout=90) for _ in processes]
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    assert [status for status, _ in collected] == ["ok"] * workers, collected
    outcomes = [item for _, batch in collected for item in batch]
    _check_exactly_once(path, outcomes, workers)


def test_racing_updates_lose_no_versions(tmp_path: Path) -> None:
    path = tmp_path / "updates.db"
    repo = SqliteFhirRepository(path)
    rid = repo.create(patient()).id
    workers, rounds = 4, 10
    barrier = threading.Barrier(workers)

    def run() -> None:
        barrier.wait()
        for _ in range(rounds):
            repo.conditional_update("Patient", _criteria("9000000009"), patient())

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert repo.read("Patient", rid).version_id == str(1 + workers * rounds)
        versions = [h.version_id for h in repo.history("Patient", rid)]
        assert versions == [str(v) for v in range(1 + workers * rounds, 0, -1)]
        assert repo.search("Patient", []).total == 1
    finally:
        repo.close()


def test_if_match_lets_exactly_one_racer_win(tmp_path: Path) -> None:
    repo = SqliteFhirRepository(tmp_path / "ifmatch.db")
    rid = repo.create(patient()).id
    workers = 6
    barrier = threading.Barrier(workers)
    wins: list[str] = []
    conflicts: list[str] = []

    def run(worker: int) -> None:
        barrier.wait()
        try:
            repo.update("Patient", rid, patient(id=rid, given=f"W{worker}"), if_match='W/"1"')
            wins.append(str(worker))
        except VersionConflict as exc:  # anything else ends the thread uncounted: the totals fail
            conflicts.append(type(exc).__name__)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert len(wins) == 1 and conflicts == ["VersionConflict"] * (workers - 1)
        assert repo.read("Patient", rid).version_id == "2"
    finally:
        repo.close()
