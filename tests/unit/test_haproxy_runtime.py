"""HAProxy's Runtime API client sends one command, never a chain: ';' and
newlines separate commands in HAProxy's CLI, so a value that carries one is
refused before anything is sent."""

import pytest

from bay_salt.host.haproxy_runtime import RuntimeAPI


@pytest.mark.parametrize("command", [
    "set server demo.web/s1 addr 10.0.0.5;shutdown sessions server demo.web/s2 port 8000",
    "set server demo.web/s1 addr 10.0.0.5\nshow info",
    "set server demo.web/s1 addr 10.0.0.5\r",
    "set server demo.web/s1 addr \x00",
])
def test_a_chained_or_odd_command_is_refused_before_it_is_sent(tmp_path, command):
    api = RuntimeAPI(str(tmp_path / "no-socket-here"))  # nothing listens: a refusal must come first
    with pytest.raises(ValueError, match="one Runtime API command at a time"):
        api.execute(command)
