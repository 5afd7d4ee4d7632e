{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import bay with context %}
{%- set c = bay.consul %}
{%- if c.source == 'hashicorp' %}
bay-consul-repo:
  pkgrepo.managed:
    - name: deb [signed-by=/usr/share/keyrings/hashicorp-archive-keyring.gpg] {{ c.hashicorp_repo }} {{ grains['oscodename'] }} main
    - file: /etc/apt/sources.list.d/hashicorp.list
    - key_url: {{ c.hashicorp_repo }}/gpg
    - aptkey: False
    - require_in:
      - pkg: bay-consul-package
{%- elif c.source == 'debian-bullseye' %}
bay-consul-bullseye-source:
  file.managed:
    - name: /etc/apt/sources.list.d/bay-bullseye.sources
    - contents: {{ salt['bay.bullseye_source']() | json }}

bay-consul-bullseye-pin:
  file.managed:
    - name: /etc/apt/preferences.d/bay-bullseye
    - contents: {{ salt['bay.bullseye_pin']() | json }}

bay-consul-apt-update:
  cmd.run:
    - name: apt-get update -q
    - onchanges:
      - file: bay-consul-bullseye-source
      - file: bay-consul-bullseye-pin
    - require_in:
      - pkg: bay-consul-package
{%- endif %}

bay-consul-package:
  pkg.installed:
    - name: {{ c.package }}
{%- if c.source == 'debian-bullseye' %}
    - fromrepo: bullseye
{%- endif %}

bay-consul-data-dir:
  file.directory:
    - name: {{ c.data_dir }}
    - user: consul
    - group: consul
    - mode: '0750'
    - require:
      - pkg: bay-consul-package

bay-consul-config:
  file.serialize:
    - name: {{ c.config_dir }}/bay.json
    - serializer: json
    - dataset: {{ salt['bay.consul_config'](bay) | json }}
    - user: root
    - group: consul
    - mode: '0640'
    - makedirs: True
    # holds the gossip key: no diff in state output or logs
    - show_changes: False
    - require:
      - pkg: bay-consul-package

{%- if c.tls.key_file %}

# the agent (user consul) reads its TLS key; nobody else
bay-consul-tls-key:
  file.managed:
    - name: {{ c.tls.key_file }}
    - replace: False
    - user: root
    - group: consul
    - mode: '0640'
    - show_changes: False
    - require:
      - pkg: bay-consul-package
    - require_in:
      - service: bay-consul-service
{%- endif %}

bay-consul-service:
  service.running:
    - name: consul
    - enable: True
    # a daemon that dies right after start fails the state instead of passing
    - init_delay: 2
    - require:
      - file: bay-consul-data-dir
    - watch:
      - file: bay-consul-config

# the token bay-lb-sync and bay-events read KV with (root only, never shown)
bay-consul-reader-token:
  file.managed:
    - name: /etc/bay/consul-reader.env
    - contents: {{ salt['bay.consul_token_env']('reader', bay) | json }}
    - mode: '0600'
    - makedirs: True
    - show_changes: False
{%- if bay.consul.acl.enabled and bay.node.consul_server %}

# each Bay role's policy and token, created with the management token (servers)
bay-consul-acl:
  bay_consul.acl_present:
    - name: bay
    - require:
      - service: bay-consul-service
{%- endif %}
