"""The log indexer's pure parts: bulk bodies, the store's answers, index names."""

import json

from bay_salt.logs import search
from bay_salt.model import names


def test_a_bulk_body_creates_each_record_under_its_partition_and_offset_in_its_services_index_of_its_day():
    body, keys = search.bulk_body([("demo", 2, 17, b'{"message":"hi","level":"info"}', 1_765_000_000_000),
                                   ("demo", 0, 3, b"plain text", 1_765_000_000_500)])
    lines = body.decode().splitlines()
    assert json.loads(lines[0]) == {"create": {"_index": "bay-logs.demo.2025-12-06", "_id": "2-17"}}
    doc = json.loads(lines[1])
    assert doc["partition"] == 2 and doc["offset"] == 17 and doc["message"] == "hi"
    assert doc["@timestamp"].startswith("2025-12-06T")
    assert json.loads(lines[3])["message"] == "plain text" and keys == [(2, 17), (0, 3)]


def test_a_record_already_indexed_counts_as_done_and_overload_is_tried_again():
    items = [{"create": {"_id": "0-1", "status": 201}}, {"create": {"_id": "0-2", "status": 409}},
             {"create": {"_id": "0-3", "status": 400, "error": {"reason": "mapper_parsing_exception"}}}]
    created, present, refused, again = search.bulk_outcome({"items": items})
    assert (created, present, again) == (1, 1, False) and refused[0].startswith("0-3: 400 mapper_parsing")
    assert search.bulk_outcome({"items": [{"create": {"status": 429}}]})[3]


def test_one_services_index_pattern_never_matches_anothers():
    idx = names.search_index("foo-bar", 0)
    assert idx == "bay-logs.foo-bar.1970-01-01" and names.parse_search_index(idx) == ("foo-bar", 0.0)
    import fnmatch

    assert not fnmatch.fnmatch(idx, names.search_pattern("foo"))
    assert fnmatch.fnmatch(idx, names.search_pattern("foo-bar"))
    assert names.parse_search_index("other") is None and names.parse_search_index("bay-logs.x.notaday") is None


def test_an_opensearch_home_puts_each_jar_where_a_distribution_keeps_it(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for j in ("opensearch-2.19.6.jar", "netty-common-4.1.jar", "transport-netty4-client-2.19.6.jar",
              "analysis-common-2.19.6.jar"):
        (lib / j).write_bytes(b"")
    links = search.opensearch_links("/h", str(lib))
    assert links["/h/lib/opensearch-2.19.6.jar"] and links["/h/modules/transport-netty4/netty-common-4.1.jar"]
    assert "/h/modules/analysis-common/analysis-common-2.19.6.jar" in links
    files = search.opensearch_files("/h", str(lib), "/d", "10.0.0.5", 9200, 9300)
    assert "network.host: 10.0.0.5" in files["/h/config/opensearch.yml"]
    assert "classname=org.opensearch.transport.Netty4Plugin" in files[
        "/h/modules/transport-netty4/plugin-descriptor.properties"]


def test_a_kafka_node_runs_opensearch_on_loopback_and_an_indexer_of_its_own(tmp_path):
    from bay_salt.logs import nodefiles
    from tests.unit.test_logs import _cfg

    cfg = _cfg()
    files = nodefiles.search_files(cfg)
    indexer = json.loads(files[nodefiles.INDEXER_CONFIG]["contents"])
    assert files[nodefiles.INDEXER_CONFIG]["mode"] == "0600"  # Kafka's password
    assert indexer["search"]["url"] == "http://127.0.0.1:9200" and indexer["group"] == "bay-log-indexer-n1"
    unit = files["/etc/systemd/system/bay-search.service"]["contents"]
    assert "User=bay-search" in unit and "bay-search-home" in unit and "org.opensearch.bootstrap.OpenSearch" in unit
    site = _cfg(logs={"search": {"url": "https://search.example.com:9200", "password": "pw"}})
    files = nodefiles.search_files(site)
    assert "/etc/systemd/system/bay-search.service" not in files  # a site's own store: the indexer only
    indexer = json.loads(files[nodefiles.INDEXER_CONFIG]["contents"])
    assert indexer["group"] == names.LOG_INDEXER_GROUP and indexer["search"]["password"] == "pw"


def test_dockers_timestamps_are_taken_off_each_output_line_and_the_cursor_survives_a_restart(tmp_path):
    from bay_salt.logs import output

    t, rest = output.split_timestamp(b"2026-12-06T20:00:01.250000000Z hello world")
    assert rest == b"hello world" and abs(t - 1796587201.25) < 1e-6
    assert output.split_timestamp(b"no stamp here") == (None, b"no stamp here")
    c = output.Cursor(str(tmp_path / "c.json"))
    c.set("abc/stdout", 10.0)
    c.set("abc/stdout", 5.0)  # never backwards
    c.set("gone/stderr", 3.0)
    c.save(alive={"abc"})
    assert output.Cursor(str(tmp_path / "c.json")).at == {"abc/stdout": 10.0}
