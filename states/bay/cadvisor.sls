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

bay-cadvisor-service:
  service.running:
    - name: cadvisor
    - enable: True
    # a daemon that dies right after start fails the state instead of passing
    - init_delay: 2
    - require:
      - service: bay-docker-service
    - watch:
      - file: bay-cadvisor-environment
