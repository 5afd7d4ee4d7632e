"""Two carbon-caches behind one graphite-web (``bay:monitoring:carbon_caches: 2``),
real processes on this machine: the agents' :class:`carbon.Shards` send each
series to the cache carbon's ring gives it, graphite-web (its own settings,
loaded as it loads them) asks that same cache for unflushed points, every
series reads back through the render API, and a cache that goes away keeps
only its own series' points waiting."""

import json
import subprocess
import time

import pytest

from bay_salt.cluster.processes import Graphite
from bay_salt.metrics import carbon, graphite
from bay_salt.metrics.render import RenderClient
from tests.helpers import non_null
from tests.support.daemons import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    g = Graphite(tmp_path_factory.mktemp("graphite2"), retention="1s:1h,10s:1d", caches=2).start()
    try:
        yield g
    finally:
        g.stop()


def loopback_shards(g: Graphite, **kw) -> carbon.Shards:
    """Shards straight to the caches' pickle ports (on a node: HAProxy's)."""
    return carbon.Shards({c.ring_key: carbon.Target("127.0.0.1", c.pickle_port) for c in g.caches}, **kw)


SERIES = [f"bay.it.shards.s{i}.web.i{i % 3}.cpu_cores" for i in range(40)]


def graphite_webs_choice(g: Graphite, names: list[str]) -> dict[str, str]:
    """The cache graphite-web's CarbonLink asks for each series (its instance),
    computed by graphite-web itself from the settings file Bay wrote."""
    code = ("import json, sys, django; django.setup()\n"
            "from graphite.carbonlink import CarbonLink\n"
            "print(json.dumps({n: CarbonLink().select_host(n)[1] for n in json.load(sys.stdin)}))")
    out = subprocess.run([str(g.bin / "python"), "-c", code], input=json.dumps(names), env=g.env,
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_each_series_goes_to_the_cache_graphite_web_asks_and_all_read_back(two):
    shards = loopback_shards(two).start()
    try:
        now = int(time.time())
        shards.put([(n, (now - 5 + k, float(k))) for n in SERIES for k in range(5)])
        wait_for(lambda: shards.pending() == 0 and shards.sent == 200, 30, "the 200 points sent")
        per_cache = {key[1]: {n for n in SERIES if shards._of(n) is s} for key, s in shards.shippers.items()}
        assert all(len(v) >= 10 for v in per_cache.values()), per_cache  # both caches get their share
        asked = graphite_webs_choice(two, SERIES)
        assert all(n in per_cache[asked[n]] for n in SERIES)
        client = RenderClient(two.url)

        def all_back():
            got = client.series("bay.it.shards.*.web.*.cpu_cores", since="-5min")
            return len(got) == 40 and all(sum(non_null(v)) == 10.0 for v in got.values())

        wait_for(all_back, 60, "every series' five points through the render API")
    finally:
        shards.stop()


def test_a_cache_away_keeps_only_its_own_series_waiting(two):
    shards = loopback_shards(two, capacity=10_000)
    for s in shards.shippers.values():
        s.retry = 0.5
    shards.start()
    b = two.more[0]
    try:
        b.stop()
        now = int(time.time())
        shards.put([(n, (now - 30, 7.0)) for n in SERIES])
        on_b = [n for n in SERIES if shards._of(n) is shards.shippers[("127.0.0.1", "b")]]
        wait_for(lambda: shards.shippers[("127.0.0.1", "a")].pending() == 0 and shards.errors >= 1, 30,
                 "cache a's points sent, cache b found away")
        assert shards.pending() == len(on_b) and shards.dropped == 0
        two.stop_carbon()
        two.start_carbon()  # both again (a cache comes back as its unit restarts it)
        wait_for(lambda: shards.pending() == 0, 60, "cache b's points sent once it is back")
        client = RenderClient(two.url)
        wait_for(lambda: all(7.0 in non_null(client.series(n, since="-5min").get(n, [])) for n in on_b), 60,
                 "cache b's series read back")
    finally:
        shards.stop()
        if two.carbon is None:
            two.start_carbon()


def test_one_carbon_gets_a_plain_shipper_and_the_ports_follow_haproxys_scheme():
    first = carbon.Target("10.0.0.1", 2014, "/n.pem", "/n.key", "/ca.pem")
    targets = graphite.cache_targets(first, 3)
    assert [(k[1], t.port, t.ca_file) for k, t in targets.items()] == [("a", 2014, "/ca.pem"), ("b", 2015, "/ca.pem"),
                                                                        ("c", 2016, "/ca.pem")]
    assert isinstance(carbon.open_shipper(graphite.cache_targets(first)), carbon.Shipper)
    assert isinstance(carbon.open_shipper(targets), carbon.Shards)
