# Ansible connection plugin: run tasks in a local Docker container with
# `docker exec`/`docker cp`. ansible-core ships no Docker connection; this one
# lets the bootstrap playbook target `bay up` node containers (and any other
# container) without sshd in them. For real servers use the default ssh.
from __future__ import annotations

DOCUMENTATION = """
name: bay_docker
short_description: run tasks in a local Docker container (docker exec / docker cp)
description:
  - Executes commands with C(docker exec) and moves files with C(docker cp).
author: Bay
options:
  remote_addr:
    description: the container name or id (the last variable set wins)
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
  docker_bin:
    description: the docker client
    default: docker
    vars:
      - name: ansible_docker_bin
"""

import shutil
import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleFileNotFound
from ansible.plugins.connection import ConnectionBase


class Connection(ConnectionBase):
    transport = "bay_docker"
    has_pipelining = True

    def _docker(self):
        binary = shutil.which(self.get_option("docker_bin"))
        if not binary:
            raise AnsibleConnectionFailure("the docker client is not installed on the controller")
        return binary

    def _connect(self):
        if not self._connected:
            container = self.get_option("remote_addr")
            res = subprocess.run([self._docker(), "inspect", "-f", "{{.State.Running}}", container],
                                 capture_output=True, text=True)
            if res.returncode != 0 or res.stdout.strip() != "true":
                raise AnsibleConnectionFailure(f"container {container} is not running: {res.stderr.strip()}")
            self._connected = True
        return self

    def exec_command(self, cmd, in_data=None, sudoable=False):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        argv = [self._docker(), "exec", "-i", self.get_option("remote_addr"), "/bin/sh", "-c", cmd]
        proc = subprocess.run(argv, input=in_data, capture_output=True)
        return proc.returncode, proc.stdout, proc.stderr

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        res = subprocess.run([self._docker(), "cp", in_path, f"{self.get_option('remote_addr')}:{out_path}"],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise AnsibleFileNotFound(f"docker cp {in_path} -> {out_path}: {res.stderr.strip()}")

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        res = subprocess.run([self._docker(), "cp", f"{self.get_option('remote_addr')}:{in_path}", out_path],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise AnsibleFileNotFound(f"docker cp {in_path} <- {out_path}: {res.stderr.strip()}")

    def close(self):
        self._connected = False
