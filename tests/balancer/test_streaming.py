"""100 MiB up and down through the balancer without the balancer holding it (SPEC §5)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

import httpx

from tests.balancer.conftest import BalancerFactory, group_rss
from tests.servers import ManagedProcess

MiB = 1024 * 1024
SIZE = 100 * MiB


class PeakRss:
    """Samples the balancer's RSS (all its processes) every 20 ms while in a ``with``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = group_rss(pid)
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, group_rss(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def test_100_mib_download_and_upload_stream_through(
    upstreams: dict[str, ManagedProcess], balancer_factory: BalancerFactory
) -> None:
    balancer = balancer_factory([upstreams["n1"]], "--max-body", "200m")
    assert balancer.pid is not None
    piece = bytes(range(256)) * 4096  # 1 MiB

    def body() -> Iterator[bytes]:
        for _ in range(SIZE // MiB):
            yield piece

    with httpx.Client(base_url=balancer.url, timeout=60) as client, PeakRss(balancer.pid) as rss:
        received = 0
        with client.stream("GET", f"/bytes?n={SIZE}&chunked=1") as response:
            assert response.status_code == 200
            for data in response.iter_bytes():
                received += len(data)
        uploaded = client.post("/upload", content=body(), headers={"Content-Length": str(SIZE)})
    assert received == SIZE
    assert uploaded.status_code == 200
    answer = uploaded.json()
    assert answer["bytes"] == SIZE
    assert answer["sha256"] == hashlib.sha256(piece * (SIZE // MiB)).hexdigest()
    print(f"balancer RSS grew {rss.growth / MiB:.1f} MiB (peak {rss.peak / MiB:.1f} MiB)")
    assert rss.growth < 50 * MiB, f"balancer RSS grew {rss.growth / MiB:.1f} MiB"
