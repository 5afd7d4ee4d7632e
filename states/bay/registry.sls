{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import bay with context %}
# what this part needs, so `state.apply bay.registry` works on its own
include:
  - {{ tplroot }}.python
  - {{ tplroot }}.consul
{#- Bay's image registry (bay_salt.registry), on nodes with role `registry`:
    stateless instances over one storage (HDFS or a shared disk), each
    registered in Consul KV once it answers, so every node's HAProxy serves
    them all on bay:registry:port. #}
{%- if 'registry' in bay.node.roles %}
{%- set storage_dir = salt['bay.registry_storage_dir'](bay) %}
{%- if storage_dir %}
bay-registry-storage:
  file.directory:
    - name: {{ storage_dir }}
    - makedirs: True
    - mode: '0700'
    - require_in:
      - service: bay-registry-service
{%- endif %}

bay-registry-unit:
  file.managed:
    - name: /etc/systemd/system/bay-registry.service
    - contents: {{ salt['bay.registry_unit'](bay) | json }}

bay-registry-service:
  service.running:
    - name: bay-registry
    - enable: True
    - watch:
      - file: bay-registry-unit
{%- endif %}
