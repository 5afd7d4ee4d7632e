{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import bay with context %}
# what this part needs, so `state.apply bay.registry` works on its own
include:
  - {{ tplroot }}.python
  - {{ tplroot }}.consul
  - {{ tplroot }}.haproxy
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

# who may do what (users' hashes, the token secret, grants from the services pillar)
bay-registry-auth:
  file.serialize:
    - name: /etc/bay/registry-auth.json
    - serializer: json
    - dataset: {{ salt['bay.registry_auth_file'](bay) | json }}
    - makedirs: True
    - mode: '0600'
    - show_changes: False

bay-registry-unit:
  file.managed:
    - name: /etc/systemd/system/bay-registry.service
    - contents: {{ salt['bay.registry_unit'](bay) | json }}

# the token its registration writes KV with (root only, never shown)
bay-registry-consul-token:
  file.managed:
    - name: /etc/bay/consul-registry.env
    - contents: {{ salt['bay.consul_token_env']('registry', bay) | json }}
    - mode: '0600'
    - makedirs: True
    - show_changes: False

bay-registry-service:
  service.running:
    - name: bay-registry
    - enable: True
    - require:
      - file: bay-registry-auth
    - watch:
      - file: bay-registry-unit
      - file: bay-registry-consul-token
{%- if bay.registry.tls.cert_file %}
    # moved to loopback first: the HAProxy frontend that ends its TLS then binds instance_port
    - require_in:
      - file: bay-haproxy-config
{%- endif %}

# the fast path registers on start (the unit's ExecStartPost); this one stays
# beside the registry and puts back its KV record whenever anything took it out
bay-registry-keep-unit:
  file.managed:
    - name: /etc/systemd/system/bay-registry-keep.service
    - contents: {{ salt['bay.registry_keep_unit'](bay) | json }}

bay-registry-keep-systemd-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: bay-registry-keep-unit

bay-registry-keep:
  service.running:
    - name: bay-registry-keep
    - enable: True
    - require:
      - cmd: bay-registry-keep-systemd-reload
      - service: bay-registry-service
    - watch:
      - file: bay-registry-keep-unit
      - file: bay-registry-consul-token

# new grants (a service declared, its owners changed) are read again without a
# restart: uploads in flight go on
bay-registry-auth-reload:
  cmd.run:
    - name: systemctl reload bay-registry
    - onchanges:
      - file: bay-registry-auth
    - require:
      - service: bay-registry-service
{%- endif %}
