{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import bay with context %}
# what this part needs, so `state.apply bay.docker` works on its own
include:
  - {{ tplroot }}.python
  - {{ tplroot }}.consul
bay-docker-package:
  pkg.installed:
    - name: {{ bay.docker.package }}

bay-docker-daemon-config:
  file.serialize:
    - name: /etc/docker/daemon.json
    - serializer: json
    - dataset: {{ salt['bay.docker_daemon_config'](bay) | json }}
    - makedirs: True
    - mode: '0644'
    - require:
      - pkg: bay-docker-package

bay-docker-service:
  service.running:
    - name: {{ bay.docker.service }}
    - enable: True
    - watch:
      - file: bay-docker-daemon-config
{%- if bay.docker.registry %}
{%- if bay.registry.tls.ca_file %}

# Docker trusts Bay's registry through this CA (certs.d: no daemon restart)
bay-docker-registry-ca:
  file.managed:
    - name: /etc/docker/certs.d/{{ bay.docker.registry }}/ca.crt
    - source: {{ bay.registry.tls.ca_file }}
    - makedirs: True
    - mode: '0644'
    - require:
      - pkg: bay-docker-package
{%- endif %}

# the node's login to Bay's registry: its pulls (the controller's too) use it
bay-docker-registry-login:
  file.serialize:
    - name: /root/.docker/config.json
    - serializer: json
    - dataset: {{ salt['bay.docker_client_config'](bay) | json }}
    - makedirs: True
    - mode: '0600'
    # holds the password: no diff in state output or logs
    - show_changes: False
{%- endif %}

# Docker's event stream -> Salt events to the master, at once (bay_salt.node.docker_events)
bay-events-unit:
  file.managed:
    - name: /etc/systemd/system/bay-events.service
    - contents: {{ salt['bay.events_unit'](bay) | json }}

bay-events-hygiene:
  file.serialize:
    - name: {{ salt['bay.hygiene_path']() }}
    - serializer: json
    - dataset: {{ salt['bay.hygiene_config'](bay) | json }}
    - makedirs: True
    - mode: '0644'

bay-events-service:
  service.running:
    - name: bay-events
    - enable: True
    - require:
      - service: bay-docker-service
    - watch:
      - file: bay-events-unit
      - file: bay-events-hygiene
      - file: bay-consul-reader-token
