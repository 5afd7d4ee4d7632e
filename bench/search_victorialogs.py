"""The other search store tried for #25: VictoriaLogs (v1.52.2, built here
from the Go module proxy), fed the same bulk bodies the indexer sends to
OpenSearch through its Elasticsearch bulk endpoint, against OpenSearch fed
the same way, in the same run; and what each does with a record sent twice
(what the indexer does after a crash). docs/logs.md says why OpenSearch.

    GOBIN=/tmp/vl go install github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@v1.52.2
    .venv/bin/python bench/search_victorialogs.py --binary /tmp/vl/victoria-logs [--records 100000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from search import records  # noqa: E402

from bay_salt.cluster.processes import Daemon, OpenSearch, free_port  # noqa: E402
from bay_salt.logs import search  # noqa: E402
from tests.helpers import CHECKOUT  # noqa: E402

console = Console()


def bodies(service: str, recs: list[bytes]) -> list[bytes]:
    now_ms = int(time.time() * 1000)
    return [search.bulk_body([(service, 0, i + k, r, now_ms) for k, r in enumerate(recs[i:i + search.BATCH])])[0]
            for i in range(0, len(recs), search.BATCH)]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS:")) / 1024


def vl_count(url: str, service: str) -> int:
    res = requests.post(f"{url}/select/logsql/query", data={"query": f'service:="{service}" | stats count() n'},
                        timeout=30)
    lines = [ln for ln in res.text.splitlines() if ln.strip()]
    return int(__import__("json").loads(lines[0])["n"]) if lines else 0


def vl_rate(url: str, service: str, parts: list[bytes], n: int) -> float:
    started = time.monotonic()
    for body in parts:
        res = requests.post(f"{url}/insert/elasticsearch/_bulk", data=body, timeout=60,
                            params={"_msg_field": "message", "_time_field": "@timestamp",
                                    "_stream_fields": "service,group,instance"},
                            headers={"Content-Type": "application/x-ndjson"})
        res.raise_for_status()
    requests.get(f"{url}/internal/force_flush", timeout=30)
    while vl_count(url, service) < n:
        time.sleep(0.05)
    return n / (time.monotonic() - started)


def os_rate(store: search.Store, service: str, parts: list[bytes], n: int) -> float:
    started = time.monotonic()
    for body in parts:
        store.bulk(body)
    while True:
        store.refresh(service)
        if store.count(service) >= n:
            return n / (time.monotonic() - started)
        time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bay-bench-vl-"))
    port = free_port()
    vl = Daemon([args.binary, f"-storageDataPath={work}/vl", f"-httpListenAddr=127.0.0.1:{port}", "-loggerLevel=WARN"],
                work / "vl.log")
    url = f"http://127.0.0.1:{port}"
    server = OpenSearch(work / "opensearch", CHECKOUT).start()
    store = search.Store(server.url)
    store.ensure_template()
    try:
        for _ in range(100):
            try:
                requests.get(f"{url}/health", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                time.sleep(0.1)
        os_rate(store, "warmup", bodies("warmup", records(50_000, "warmup")), 50_000)
        vl_rate(url, "warmup", bodies("warmup", records(50_000, "warmup")), 50_000)
        rows = []
        for r in range(args.rounds):
            parts = bodies(f"r{r}", records(args.records, f"r{r}"))
            got = {"opensearch": os_rate(store, f"r{r}", parts, args.records),
                   "victorialogs": vl_rate(url, f"r{r}", parts, args.records)}
            rows.append(got)
            console.print(f"round {r + 1}: OpenSearch {got['opensearch']:.0f}/s, VictoriaLogs "
                          f"{got['victorialogs']:.0f}/s")
        # a batch sent again (the indexer after a crash, before its commit)
        again = parts[0]
        store.bulk(again)
        requests.post(f"{url}/insert/elasticsearch/_bulk", data=again, timeout=60,
                      params={"_msg_field": "message", "_time_field": "@timestamp"})
        requests.get(f"{url}/internal/force_flush", timeout=30)
        time.sleep(1)
        store.refresh(f"r{args.rounds - 1}")
        twice = {"opensearch": store.count(f"r{args.rounds - 1}") - args.records,
                 "victorialogs": vl_count(url, f"r{args.rounds - 1}") - args.records}
        mem = {"opensearch": server.rss_mib(), "victorialogs": rss_mib(vl.pid)}
    finally:
        server.stop()
        vl.stop()
        shutil.rmtree(work, ignore_errors=True)
    import statistics

    table = Table(title=f"{args.records} records a round, {args.rounds} rounds, the same bulk bodies")
    for col in ("store", "records/s (median)", "resident memory", "a batch of 2000 sent twice"):
        table.add_column(col)
    for k in ("opensearch", "victorialogs"):
        table.add_row(k, f"{statistics.median(r[k] for r in rows):.0f}", f"{mem[k]:.0f} MiB",
                      f"{twice[k]} documents more")
    console.print(table)


if __name__ == "__main__":
    main()
