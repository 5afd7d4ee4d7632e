"""Open or close the registry node's TLS frontend with its instance.

With TLS the registry's node HAProxy ends it (``frontend bay-registry-tls`` on
``instance_port``) in front of the instance on loopback. A frontend that
accepted while its instance is stopped would hand every other node's HAProxy
a connection that ends at once (they pass the TLS through and cannot try
another instance once connected). So the bay-registry unit closes the
frontend before the instance stops, and after it stopped whatever the cause
(``ExecStop``, ``ExecStopPost``: HAProxy releases the port, a connection is
refused and goes to another instance), and opens it again once the instance
answers (``ExecStartPost``, after registering).

    bay-registry-frontend open|close [--socket /run/haproxy/admin.sock]
"""

from __future__ import annotations

import argparse

from bay_salt.host.haproxy_runtime import RuntimeAPI, RuntimeAPIError
from bay_salt.model import names
from bay_salt.util import retry

#: seconds ``open`` tries a HAProxy that does not answer (restarting): a frontend left closed
#: while its instance runs would keep this node's registry out of every other node's HAProxy
OPEN_FOR = 10.0


def switch(api: RuntimeAPI, open_it: bool) -> str:
    """``enable`` or ``disable frontend``; HAProxy's answer ("" when done)."""
    return api.execute(f"{'enable' if open_it else 'disable'} frontend {names.REGISTRY_TLS_FRONTEND}").strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bay-registry-frontend", description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=("open", "close"))
    p.add_argument("--socket", default="/run/haproxy/admin.sock")
    args = p.parse_args(argv)
    api, opening = RuntimeAPI(args.socket), args.action == "open"
    try:
        out = retry.call(lambda: switch(api, True), "HAProxy answers", timeout=OPEN_FOR, interval=0.5,
                         on=(RuntimeAPIError,)) if opening else switch(api, False)
    except RuntimeAPIError as err:  # HAProxy not running: it opens the frontend when it starts
        print(f"bay-registry-frontend: {err}")
        return 0
    if out and "already" not in out:
        # not configured yet (a node being set up): HAProxy opens it when it loads the configuration
        print(f"bay-registry-frontend {args.action}: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
