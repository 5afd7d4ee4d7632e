{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import bay with context %}
# what this part needs, so `state.apply bay.cadvisor` works on its own
include:
  - {{ tplroot }}.docker
bay-cadvisor-package:
  pkg.installed:
    - name: {{ bay.cadvisor.package }}

bay-cadvisor-environment:
  file.managed:
    - name: /etc/default/cadvisor
    - contents: {{ salt['bay.cadvisor_environment'](bay) | json }}
    - mode: '0644'
    - require:
      - pkg: bay-cadvisor-package

# on loopback only: the node's own agents and Salt read it there
bay-cadvisor-unit-override:
  file.managed:
    - name: /etc/systemd/system/cadvisor.service.d/bay.conf
    - contents: {{ salt['bay.cadvisor_unit_override'](bay) | json }}
    - makedirs: True
    - mode: '0644'

# systemd does not always notice a new drop-in by itself (NeedDaemonReload
# stays "no"), and a restart would then run the old command line
bay-cadvisor-systemd-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: bay-cadvisor-unit-override

bay-cadvisor-service:
  service.running:
    - name: cadvisor
    - enable: True
    # a daemon that dies right after start fails the state instead of passing
    - init_delay: 2
    - require:
      - service: bay-docker-service
      - cmd: bay-cadvisor-systemd-reload
    - watch:
      - file: bay-cadvisor-environment
      - file: bay-cadvisor-unit-override
