"""`bay site init`: a real site's secrets, certificates, pillar and master
configuration, made by the same code as `bay up`'s."""

import stat

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from bay_salt import cli
from bay_salt.cluster import build, sitefiles
from bay_salt.cluster.sitefiles import Inventory, InventoryError

MASTERS = ["m1=10.1.0.2", "m2=10.1.0.3"]
NODES = ["n1=10.1.0.11", "n2=10.1.0.12", "n3=10.1.0.13", "n4=10.1.0.14"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site") / "prod"
    sitefiles.init(root, Inventory.parse("prod", MASTERS, NODES))
    return root


def pillar(site, name):
    return yaml.safe_load((site / "pillar" / name).read_text())


def cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def san(c):
    ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)) | {str(a) for a in ext.get_values_for_type(x509.IPAddress)}


def test_roles_default_as_bay_up_gives_them():
    inv = Inventory.parse("prod", MASTERS, NODES)
    assert [n.roles for n in inv.nodes] == [("worker", "registry", "monitoring", "kafka"), ("worker", "registry"),
                                            ("worker",), ("worker",)]
    assert inv.consul_servers == ["n1", "n2", "n3"]
    assert Inventory.parse("prod", MASTERS, NODES[:2]).consul_servers == ["n1"]
    own = Inventory.parse("prod", MASTERS, ["a=10.0.0.1:worker,registry,kafka", "b=10.0.0.2:worker,monitoring"])
    assert own.with_role("registry") == ["a"] and own.with_role("monitoring") == ["b"]
    # the local cluster's pillar gives its nodes the same roles
    p = build.cluster_pillar("c", {"node1": "10.0.0.1", "node2": "10.0.0.2", "node3": "10.0.0.3"}, "k")
    assert [v["roles"] for v in p["bay"]["nodes"].values()] == [sitefiles.default_roles(k) for k in range(3)]


@pytest.mark.parametrize("masters,nodes,error", [
    ([], NODES, "no --master"),
    (MASTERS, [], "no --node"),
    (MASTERS, ["n1"], r"--node 'n1': expected ID=ADDRESS"),
    (MASTERS, ["n1=host.example"], r"'host.example' is not an IP address"),
    (MASTERS, ["n/1=10.0.0.1"], r"'n/1' is not a Salt minion id"),
    (MASTERS, ["n1=10.0.0.1:worker,db"], r"unknown role 'db' \(known: worker, registry"),
    (MASTERS, ["n1=10.0.0.1", "n1=10.0.0.2"], r"id 'n1' is named twice"),
    (MASTERS, ["n1=10.1.0.2"], r"address '10.1.0.2' is named twice \(m1 and n1\)"),
    (MASTERS, ["n1=10.0.0.1:worker,registry", "n2=10.0.0.2"], r"--node n2: give every node its roles, or none"),
    (MASTERS, ["n1=10.0.0.1:worker"], "no node has the role registry"),
])
def test_a_bad_inventory_is_named(masters, nodes, error):
    with pytest.raises(InventoryError, match=error):
        Inventory.parse("prod", masters, nodes)


def test_each_secret_goes_only_to_the_nodes_that_need_it(site):
    top = pillar(site, "top.sls")["base"]
    assert top["*"] == ["bay", "services", "alerts", "site", "bay-secrets-node"]
    assert top["n1,n2,n3"] == [{"match": "list"}, "bay-secrets-server"]
    assert top["n1,n2"] == [{"match": "list"}, "bay-secrets-registry"]
    assert top["n1"] == [{"match": "list"}, "bay-secrets-node-n1", "bay-secrets-monitoring"]
    registry_secret = pillar(site, "bay-secrets-registry.sls")["bay"]["registry"]["auth"]["secret"]
    holders = [p.name for p in (site / "pillar").iterdir() if registry_secret in p.read_text()]
    assert holders == ["bay-secrets-registry.sls"]
    management = pillar(site, "bay-secrets-server.sls")["bay"]["consul"]["acl"]["tokens"]["management"]
    assert [p.name for p in (site / "pillar").iterdir() if management in p.read_text()] == ["bay-secrets-server.sls"]
    n3 = pillar(site, "bay-secrets-node-n3.sls")["bay"]["consul"]["acl"]["node_tokens"]
    assert list(n3) == ["n3"]
    bay = pillar(site, "bay.sls")["bay"]
    assert bay["cluster"] == "prod" and bay["nodes"]["n2"] == {"address": "10.1.0.12", "roles": ["worker", "registry"]}
    assert bay["consul"]["servers"] == ["n1", "n2", "n3"] and bay["consul"]["encrypt"]
    assert bay["logs"]["token_public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    # everything under pillar/, secrets/ and the keys is root's only
    for p in [*(site / "pillar").iterdir(), *(site / "secrets").iterdir(), site / "pki" / "ca-key.pem"]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert stat.S_IMODE(site.stat().st_mode) == 0o700


def test_each_host_gets_certificates_for_its_own_names_from_the_site_ca(site):
    ca = cert(site / "pki" / "ca.pem")
    consul = cert(site / "hosts/n3/etc/consul.d/tls/server.pem")
    assert san(consul) == {"server.bay.consul", "localhost", "127.0.0.1", "10.1.0.13"}
    node = cert(site / "hosts/n3/etc/bay/tls/node.pem")
    assert san(node) == {"n3", "localhost", "127.0.0.1", "10.1.0.13"}
    registry = cert(site / "hosts/n4/etc/bay/registry/tls.pem")
    assert {"10.1.0.11", "10.1.0.12", "10.1.0.13", "10.1.0.14", "127.0.0.1"} <= san(registry)
    master = cert(site / "hosts/m2/etc/bay/tls/master.pem")
    assert san(master) == {"m2", "localhost", "127.0.0.1", "10.1.0.3"}
    for c in (consul, node, registry, master):
        assert c.issuer == ca.subject
        ca.public_key().verify(c.signature, c.tbs_certificate_bytes, ec.ECDSA(c.signature_hash_algorithm))
    assert stat.S_IMODE((site / "hosts/n3/etc/consul.d/tls/server-key.pem").stat().st_mode) == 0o600
    assert not (site / "hosts/n3/etc/bay/consul.token").exists()  # the controller's token is the masters' only


def test_the_masters_share_keys_and_secrets_and_differ_in_who_they_are(site):
    m1, m2 = (site / "hosts" / m for m in ("m1", "m2"))
    for shared in ("etc/salt/pki/master/master.pem", "etc/bay/consul.token", "etc/bay/logs-token.key",
                   "etc/bay/graphite-web.password"):
        assert (m1 / shared).read_text() == (m2 / shared).read_text(), shared
    token = (m1 / "etc/bay/consul.token").read_text().strip()
    assert token == pillar(site, "bay-secrets-server.sls")["bay"]["consul"]["acl"]["tokens"]["controller"]
    conf = yaml.safe_load((m2 / "etc/salt/master.d/bay.conf").read_text())
    assert conf["id"] == "m2" and conf["bay_advertise"] == "10.1.0.3"
    assert conf["auto_accept"] is False and conf["open_mode"] is False and conf["presence_events"] is True
    assert [next(iter(e)) for e in conf["engines"]] == ["bay_controller", "bay_alerts"]
    assert set(conf["external_auth"]["pam"]) == {"bay-owners%", "bay-admins%"}
    assert conf["pillar_roots"] == {"base": ["/srv/bay/pillar"]} and conf["auth.pam.python"] == sitefiles.PAM_PYTHON
    assert (m1 / sitefiles.PAM_PYTHON.lstrip("/")).read_text() == '#!/bin/sh\nexec /opt/bay/venv/bin/python3 "$@"\n'
    # bay up's masters are configured by the same function
    assert {k: v for k, v in build.master_config("c", 2).items() if k not in ("id", "bay_advertise")} == \
        {k: v for k, v in conf.items() if k not in ("id", "bay_advertise")}


def test_a_site_is_never_overwritten(site, tmp_path):
    before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    with pytest.raises(InventoryError, match=rf"^{site} is not empty: `bay site init` never overwrites"):
        sitefiles.init(site, Inventory.parse("prod", MASTERS, NODES))
    assert {p: p.read_bytes() for p in site.rglob("*") if p.is_file()} == before


def test_the_command_says_what_it_made_and_never_a_secret(tmp_path):
    target = tmp_path / "s"
    res = CliRunner().invoke(cli.app, ["site", "init", str(target), "--name", "prod", *sum(
        (["--master", m] for m in MASTERS), []), *sum((["--node", n] for n in NODES), [])])
    assert res.exit_code == 0, res.output
    assert "n1" in res.output and "worker,registry,monitoring,kafka" in res.output
    for secret in ((target / "secrets/registry-admin").read_text().strip(),
                   (target / "hosts/m1/etc/bay/consul.token").read_text().strip()):
        assert secret not in res.output
    assert cli.main(["site", "init", str(tmp_path / "t"), "--master", "m1=10.0.0.1", "--node", "n1=bad"]) == 1
    assert not (tmp_path / "t").exists()


def test_a_server_added_later_gets_its_own_files_and_token(tmp_path):
    root = tmp_path / "prod"
    sitefiles.init(root, Inventory.parse("prod", MASTERS, NODES))
    before = {p.name: p.read_text() for p in (root / "pillar").iterdir()}
    assert cli.main(["site", "add-node", str(root), "--node", "n5=10.1.0.15"]) == 0
    bay = pillar(root, "bay.sls")["bay"]
    assert bay["nodes"]["n5"] == {"address": "10.1.0.15", "roles": ["worker"]}
    token = pillar(root, "bay-secrets-node-n5.sls")["bay"]["consul"]["acl"]["node_tokens"]
    assert list(token) == ["n5"]
    server = pillar(root, "bay-secrets-server.sls")["bay"]["consul"]["acl"]
    assert server["node_tokens"]["n5"] == token["n5"] and server["tokens"] == yaml.safe_load(
        before["bay-secrets-server.sls"])["bay"]["consul"]["acl"]["tokens"]
    top = pillar(root, "top.sls")["base"]
    assert top["n5"] == [{"match": "list"}, "bay-secrets-node-n5"]
    assert top["* and not L@n1,n2,n3,n4,n5"] == [{"match": "compound"}, "bay-secrets-agent"]
    assert san(cert(root / "hosts/n5/etc/consul.d/tls/server.pem")) == {
        "server.bay.consul", "localhost", "127.0.0.1", "10.1.0.15"}
    assert cert(root / "hosts/n5/etc/bay/tls/node.pem").issuer == cert(root / "pki/ca.pem").subject
    for p in (root / "pillar").iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    # what it refuses changes nothing
    after = {p.name: p.read_text() for p in (root / "pillar").iterdir()}
    for node, error in (("n5=10.1.0.16", "n5 is a node of the site already"),
                        ("n6=10.1.0.15", "address 10.1.0.15 is n5's already"),
                        ("n6=10.1.0.16:worker,registry", "role registry is not added by add-node")):
        with pytest.raises(InventoryError, match=error):
            sitefiles.add_node(root, sitefiles.parse_host(node))
    with pytest.raises(InventoryError, match="is not a site"):
        sitefiles.add_node(tmp_path / "nothing", sitefiles.parse_host("n6=10.1.0.16"))
    assert {p.name: p.read_text() for p in (root / "pillar").iterdir()} == after
