{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import bay with context %}
{#- Graphite on nodes with role `monitoring` (docs/metrics.md): carbon-cache
    and graphite-web (PyPI 1.1.10, a venv of their own) on loopback; HAProxy
    (bay.haproxy) serves carbon to the nodes' agents with TLS client
    certificates and graphite-web to people with TLS and a password.
    Dashboards are written into graphite-web from the services pillar. #}
# what this part needs, so `state.apply bay.monitoring` works on its own
include:
  - {{ tplroot }}.python
  - {{ tplroot }}.haproxy
{%- if 'monitoring' in bay.node.roles and bay.monitoring.enabled and not bay.monitoring.carbon %}
{%- set where = salt['bay.metrics_layout']() %}
{%- set venv = where.graphite_venv %}
{%- set conf = where.graphite_conf %}
{%- set carbon = salt['bay.carbon_units']() %}

bay-graphite-packages:
  pkg.installed:
    - pkgs: [libcairo2, python3-venv]

bay-graphite-user:
  user.present:
    - name: {{ where.graphite_user }}
    - system: True
    - home: {{ where.graphite_base }}
    - createhome: False
    - shell: /usr/sbin/nologin

bay-graphite-dirs:
  file.directory:
    - names: {{ where.graphite_dirs | json }}
    - user: {{ where.graphite_user }}
    - makedirs: True
    - recurse: [user]
    - require:
      - user: bay-graphite-user

bay-graphite-venv:
  cmd.run:
    - name: python3 -m venv {{ venv }}
    - creates: {{ venv }}/bin/pip
    - require:
      - pkg: bay-graphite-packages

# installed with GRAPHITE_NO_PREFIX so everything stays in the venv (not /opt/graphite)
bay-graphite-install:
  pip.installed:
    - pkgs: {{ where.graphite_packages | json }}
    - bin_env: {{ venv }}
    - env_vars:
        GRAPHITE_NO_PREFIX: "True"
{%- if bay.python.find_links %}
    - find_links: {{ bay.python.find_links | json }}
{%- endif %}
    - no_index: {{ bay.python.no_index }}
    - require:
      - cmd: bay-graphite-venv

{%- for path, f in salt['bay.monitoring_files'](bay).items() | sort %}

bay-monitoring-file-{{ path }}:
  file.managed:
    - name: {{ path }}
    - contents: {{ f.contents | json }}
    - mode: '{{ f.mode }}'
    - makedirs: True
{%- if path.startswith(where.graphite_base) %}
    - user: {{ where.graphite_user }}
    - show_changes: False
{%- endif %}
    - require:
      - file: bay-graphite-dirs
{%- endfor %}

bay-monitoring-systemd-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
{%- for unit in carbon.running %}
      - file: bay-monitoring-file-/etc/systemd/system/{{ unit }}.service
{%- endfor %}
      - file: bay-monitoring-file-/etc/systemd/system/bay-graphite-web.service

# one carbon-cache per bay:monitoring:carbon_caches (the agents shard the series over them)
bay-carbon-service:
  service.running:
    - names: {{ carbon.running | json }}
    - enable: True
    - require:
      - pip: bay-graphite-install
      - cmd: bay-monitoring-systemd-reload
    - watch:
      - file: bay-monitoring-file-{{ conf }}/carbon.conf
      - file: bay-monitoring-file-{{ conf }}/storage-schemas.conf
      - file: bay-monitoring-file-{{ conf }}/storage-aggregation.conf

{%- if carbon.retired %}

# caches a smaller carbon_caches no longer uses (carbon writes its cache out when stopped)
bay-carbon-retired:
  service.dead:
    - names: {{ carbon.retired | json }}
    - enable: False

bay-carbon-retired-units:
  file.absent:
    - names: [{% for unit in carbon.retired %}/etc/systemd/system/{{ unit }}.service{{ ", " if not loop.last }}{% endfor %}]
    - require:
      - service: bay-carbon-retired
{%- endif %}

bay-graphite-web-service:
  service.running:
    - name: bay-graphite-web
    - enable: True
    - require:
      - service: bay-carbon-service
    - watch:
      - file: bay-monitoring-file-{{ conf }}/bay_graphite_settings.py
      - file: bay-monitoring-file-/etc/systemd/system/bay-graphite-web.service

# the platform's dashboard and every service's, from the services pillar
bay-monitoring-dashboards:
  bay_monitoring.dashboards_present:
    - name: bay
    - require:
      - service: bay-graphite-web-service
{%- endif %}
