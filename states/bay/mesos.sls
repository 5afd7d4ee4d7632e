{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import bay with context %}
# what this part needs, so `state.apply bay.mesos` works on its own
include:
  - {{ tplroot }}.docker
{#- Off by default: Mesos packages are in no repository Bay's CI reaches. #}
{%- if bay.mesos.enabled %}
{%- if bay.mesos.repo %}
bay-mesos-repo:
  pkgrepo.managed:
    - name: {{ bay.mesos.repo }}
    - file: /etc/apt/sources.list.d/bay-mesos.list
    - require_in:
      - pkg: bay-mesos-package
{%- endif %}

bay-mesos-package:
  pkg.installed:
    - name: {{ bay.mesos.package }}

{%- for path, content in salt['bay.mesos_agent_files'](bay) | dictsort %}

bay-mesos-agent-config-{{ path | replace('/', '-') | trim('-') }}:
  file.managed:
    - name: {{ path }}
    - contents: {{ content | json }}
    - makedirs: True
    - require:
      - pkg: bay-mesos-package
    - watch_in:
      - service: bay-mesos-agent-service
{%- endfor %}

bay-mesos-master-disabled:
  service.dead:
    - name: mesos-master
    - enable: False
    - require:
      - pkg: bay-mesos-package

bay-mesos-agent-service:
  service.running:
    - name: mesos-slave
    - enable: True
    - require:
      - service: bay-docker-service
{%- endif %}
