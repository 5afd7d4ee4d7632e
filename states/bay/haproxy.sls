{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import bay with context %}
# what this part needs, so `state.apply bay.haproxy` works on its own
include:
  - {{ tplroot }}.python
  - {{ tplroot }}.consul
bay-haproxy-package:
  pkg.installed:
    - name: {{ bay.haproxy.package }}

bay-haproxy-config:
  file.managed:
    - name: {{ bay.haproxy.config }}
    - contents: {{ salt['bay.haproxy_config'](bay) | json }}
    # root only: it holds graphite-web's password hashes on a monitoring node
    - mode: '0600'
    - show_changes: False
    # a config HAProxy rejects is never put in place
    - check_cmd: /usr/sbin/haproxy -c -f
    - require:
      - pkg: bay-haproxy-package

{%- if 'monitoring' in bay.node.roles and bay.monitoring.enabled and not bay.monitoring.carbon %}
# Graphite's frontends (bay.monitoring) serve this node's certificate: cert and key, root only
bay-haproxy-monitoring-pem:
  file.managed:
    - name: /etc/haproxy/bay-monitoring.pem
    - contents: {{ salt['bay.monitoring_pem'](bay) | json }}
    - mode: '0600'
    - show_changes: False
    - require:
      - pkg: bay-haproxy-package
    - require_in:
      - file: bay-haproxy-config
{%- endif %}

{%- if 'registry' in bay.node.roles and bay.registry.tls.cert_file %}
# the registry's TLS ends in this node's HAProxy (bay.registry): its certificate and key, root only
bay-haproxy-registry-pem:
  file.managed:
    - name: {{ salt['bay.registry_pem_path']() }}
    - contents: {{ salt['bay.registry_pem'](bay) | json }}
    - mode: '0600'
    - show_changes: False
    - require:
      - pkg: bay-haproxy-package
    - require_in:
      - file: bay-haproxy-config
    - watch_in:
      - service: bay-haproxy-service
{%- endif %}

bay-haproxy-service:
  service.running:
    - name: haproxy
    - enable: True
    # master-worker: a reload hands the listeners to the new workers (hitless)
    - reload: True
    - watch:
      - file: bay-haproxy-config

# The package starts HAProxy with Debian's config; a reload would hand that
# process's sockets (the Runtime API socket with its 0660 mode) to the new
# workers. Right after the install, restart once so Bay's config binds them.
bay-haproxy-restart-after-install:
  module.run:
    - service.restart:
      - name: haproxy
    # ...and after a change of /etc/default/haproxy: a reload re-executes the
    # master with its old arguments, so a new -f needs a restart
    - onchanges:
      - pkg: bay-haproxy-package
      - file: bay-haproxy-environment
    - require:
      - file: bay-haproxy-config
    - require_in:
      - service: bay-haproxy-service

bay-haproxy-environment:
  file.managed:
    - name: /etc/default/haproxy
    - contents: {{ salt['bay.haproxy_environment'](bay) | json }}
    - require:
      - pkg: bay-haproxy-package
    - require_in:
      - file: bay-haproxy-config

# Written by bay-lb-sync from then on (replace: False): it states what the
# Runtime API holds.
bay-haproxy-services-config:
  file.managed:
    - name: {{ bay.haproxy.services_config }}
    - contents: "# no services yet: bay-lb-sync writes this file from Consul KV\n"
    - replace: False
    - require:
      - pkg: bay-haproxy-package
    - require_in:
      - file: bay-haproxy-config

# the service containers' sandbox (bay_salt.node.sandbox): bay-lb-sync keeps
# its nftables table in line with KV and Docker, from this file
bay-sandbox-package:
  pkg.installed:
    - name: nftables

bay-sandbox-config:
  file.serialize:
    - name: /etc/bay/sandbox.json
    - serializer: json
    - dataset: {{ salt['bay.sandbox_config'](bay) | json }}
    - makedirs: True
    - mode: '0644'
    - require_in:
      - service: bay-lb-sync-service

bay-lb-sync-unit:
  file.managed:
    - name: /etc/systemd/system/bay-lb-sync.service
    - contents: {{ salt['bay.lbsync_unit'](bay) | json }}

bay-lb-sync-service:
  service.running:
    - name: bay-lb-sync
    - enable: True
    - require:
      - service: bay-haproxy-service
      - service: bay-consul-service
      - pkg: bay-sandbox-package
    - watch:
      - file: bay-lb-sync-unit
      - file: bay-consul-reader-token
