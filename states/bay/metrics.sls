{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import bay with context %}
{#- Metrics on every node (docs/metrics.md): bay-metrics reads cAdvisor, the
    server, the node's components and HAProxy and ships to carbon; statsd
    (npm, on loopback) aggregates the services' own metrics, which reach it
    through bay-metrics (prefixed with the sender's service and group). #}
# what this part needs, so `state.apply bay.metrics` works on its own
include:
  - {{ tplroot }}.python
  - {{ tplroot }}.cadvisor
  - {{ tplroot }}.haproxy
{%- if bay.monitoring.enabled and bay.monitoring.carbon_address %}
{%- set files = salt['bay.metrics_files'](bay) %}
{%- set where = salt['bay.metrics_layout']() %}

bay-statsd-nodejs:
  pkg.installed:
    - name: nodejs

# statsd from npm, unless it is there already (`bay up` bakes it into the
# node image; the bootstrap playbook can copy it: bay_statsd)
bay-statsd-npm:
  pkg.installed:
    - name: npm
    - unless: test -f {{ where.statsd_js }}

bay-statsd-package:
  cmd.run:
    - name: npm install --prefix {{ where.statsd_dir }} --omit=optional --no-audit --no-fund statsd@{{ where.statsd_version }}
    - creates: {{ where.statsd_js }}
    - require:
      - pkg: bay-statsd-nodejs
      - pkg: bay-statsd-npm

{%- for path, f in files.items() | sort %}

bay-metrics-file-{{ path }}:
  file.managed:
    - name: {{ path }}
    - contents: {{ f.contents | json }}
    - mode: '{{ f.mode }}'
    - makedirs: True
{%- endfor %}

bay-metrics-systemd-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: bay-metrics-file-/etc/systemd/system/bay-metrics.service
      - file: bay-metrics-file-/etc/systemd/system/bay-statsd.service

bay-statsd-service:
  service.running:
    - name: bay-statsd
    - enable: True
    - require:
      - cmd: bay-statsd-package
      - cmd: bay-metrics-systemd-reload
    - watch:
      - file: bay-metrics-file-/etc/bay/statsd.json

bay-metrics-service:
  service.running:
    - name: bay-metrics
    - enable: True
    - require:
      - cmd: bay-metrics-systemd-reload
      - service: bay-cadvisor-service
    - watch:
      - file: bay-metrics-file-/etc/bay/metrics.json
      - file: bay-metrics-file-/etc/systemd/system/bay-metrics.service
{%- endif %}
