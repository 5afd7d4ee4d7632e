"""The ``bay`` command on a salt-master: Bay's runner through Salt's own
client API (``salt.runner.RunnerClient``), no ``salt-run`` process and no
``docker exec``.

* As root (or through sudo) the runner runs in this process with the
  master's configuration, as ``root`` (``sudo_NAME`` under sudo), like
  ``salt-run`` does.
* With a login (``bay --as NAME``) the call goes to the running master
  through its request port with external auth (``pam``), which checks the
  account and its runner rights; any user on the master can do that.

Either way a failure is :class:`MasterError` with the runner's one-line
message (never Salt's traceback)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

#: where a site's salt-master reads its configuration
MASTER_CONFIG = "/etc/salt/master"
#: the CA a site's nodes' certificates (log endpoints) are checked with on a master
MASTER_CA = "/etc/bay/ca.pem"


class MasterError(RuntimeError):
    """What went wrong, one line."""


def on_a_master(config: str = MASTER_CONFIG) -> bool:
    """A salt-master's configuration is here (the file, or only its ``master.d``)."""
    return Path(config).exists() or Path(config + ".d").is_dir()


def one_line(text: str) -> str:
    """The message a runner raised, out of Salt's text (a traceback, usually)."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    if "Usage:" in lines:  # Salt's answer to a runner's SaltInvocationError (a TypeError): message, then its doc
        lines = lines[:lines.index("Usage:")]
        return " ".join(lines).removeprefix("Passed invalid arguments: ")[:400]
    for ln in reversed(lines):
        for marker in ("SaltInvocationError: ", "CommandExecutionError: ", "SaltRunnerError: "):
            if marker in ln:
                return ln.split(marker, 1)[1]
    return lines[-1][:400] if lines else "no answer"


class MasterClient:
    def __init__(self, config: str = MASTER_CONFIG, eauth: str = "pam"):
        self.config = config
        self.eauth = eauth
        self._opts = None

    def opts(self) -> dict:
        if self._opts is None:
            import salt.config

            readable = os.access(self.config, os.R_OK) if Path(self.config).exists() else os.access(
                self.config + ".d", os.R_OK | os.X_OK)
            if not readable:
                raise MasterError(f"cannot read {self.config}: run bay as root on the master, or with --as NAME "
                                  "(an account with Salt external auth)")
            opts = salt.config.client_config(self.config)  # the master's, and where its request port is
            opts["quiet"] = True
            self._opts = opts
        return self._opts

    def runner(self, fun: str, *args: str, timeout: int = 900, login: tuple[str, str] | None = None) -> dict:
        """``fun(*args)`` (``key=value`` arguments as salt-run takes them); its return, a dict."""
        import salt.exceptions
        import salt.runner

        if not login and os.geteuid() != 0:
            raise MasterError(f"{fun}: on a master, run bay as root (sudo), or as an account with Salt external "
                              "auth: bay --as NAME")
        # Salt's console warnings (objects not closed at exit) are not the user's business
        logging.getLogger("salt").setLevel(logging.ERROR)
        try:
            with salt.runner.RunnerClient(self.opts()) as client:
                data = self._call(client, fun, list(args), timeout, login)
        except salt.exceptions.EauthAuthenticationError:
            raise MasterError(f"{fun}: the master refused {login[0] if login else 'you'}: wrong password, or no "
                              "runner rights (external_auth)") from None
        except salt.exceptions.SaltClientError as err:
            raise MasterError(f"{fun}: the salt-master does not answer ({err}); is it running?") from None
        except salt.exceptions.SaltException as err:
            raise MasterError(f"{fun}: {one_line(str(err))}") from None
        ret = data.get("return") if isinstance(data, dict) else data
        if isinstance(data, dict) and data.get("success") is False or not isinstance(ret, dict):
            raise MasterError(f"{fun} {' '.join(args)}: {one_line(str(ret))}")
        return ret

    def _call(self, client, fun: str, args: list, timeout: int, login: tuple[str, str] | None):
        import salt.utils.user

        if login:  # through the running master, which checks the account (external_auth)
            sock = self.opts()["sock_dir"]
            if not os.access(Path(sock) / "master_event_pub.ipc", os.R_OK | os.W_OK):
                # the answer comes back on the master's event bus: without it the call would wait out its timeout
                raise MasterError(f"{fun}: this account cannot read the salt-master's events ({sock}); run bay "
                                  "--as NAME as root (sudo), or give it Salt's publisher permissions")
            ret = client.cmd_sync({"fun": fun, "arg": args, "eauth": self.eauth, "username": login[0],
                                   "password": login[1]}, timeout=timeout, full_return=True)
            return ret.get("data", ret) if isinstance(ret, dict) else {"return": ret, "success": False}
        return client.cmd(fun, arg=args, pub_data={"user": salt.utils.user.get_specific_user()},
                          print_event=False, full_return=True)
