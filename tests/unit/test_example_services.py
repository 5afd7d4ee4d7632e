import yaml

from bay_salt.model import services
from tests.helpers import CHECKOUT


def test_example_services_pillar_is_valid():
    example = yaml.safe_load((CHECKOUT / "pillar/services.sls").read_text())["bay"]["services"]
    groups = services.parse(example)["feed"].groups()
    assert groups["read"].instances == 8 and groups["write"].memory_mb == 1024
    assert groups["write"].health.tcp is True and groups["read"].health.http == "/healthz"
