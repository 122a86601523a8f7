"""An SMTP load generator: N client processes, each reusing one connection for its posts,
recording the latency of every accepted post."""

from __future__ import annotations

import smtplib
import time
from multiprocessing import Pool

from common import LIST

POST = (
    "From: Poster <poster@example.org>\r\n"
    "To: {list}\r\n"
    "Subject: Bench post {tag}\r\n"
    "Message-ID: <{tag}@bench.example.org>\r\n"
    "Date: Fri, 27 Nov 2026 09:00:00 +0000\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "{body}\r\n"
)
BODY = "\r\n".join(["A line of an ordinary post, about the length people write."] * 30)


def message(tag: str, to: str = LIST) -> bytes:
    return POST.format(list=to, tag=tag, body=BODY).encode()


def _client(args: tuple[int, str, int, float, str]) -> list[float]:
    port, prefix, count, pause, to = args
    latencies = []
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        client.ehlo("load.example.net")
        for i in range(count):
            start = time.perf_counter()
            refused = client.sendmail("poster@example.org", [to], message(f"{prefix}-{i}", to))
            latencies.append(time.perf_counter() - start)
            if refused:
                raise RuntimeError(f"refused: {refused}")
            if pause:
                time.sleep(pause)
    return latencies


def run(port: int, total: int, clients: int, tag: str, pause: float = 0.0,
        to: str = LIST) -> tuple[float, list[float]]:
    """Send `total` posts over `clients` connections; (seconds, sorted latencies)."""
    per = total // clients
    with Pool(clients) as pool:
        start = time.perf_counter()
        results = pool.map(_client, [(port, f"{tag}{c}", per, pause, to) for c in range(clients)])
        elapsed = time.perf_counter() - start
    return elapsed, sorted(x for r in results for x in r)


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))]
