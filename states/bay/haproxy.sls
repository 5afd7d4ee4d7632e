{%- from "bay/map.jinja" import bay with context %}
bay-haproxy-package:
  pkg.installed:
    - name: {{ bay.haproxy.package }}

bay-haproxy-config:
  file.managed:
    - name: {{ bay.haproxy.config }}
    - contents: {{ salt['bay.haproxy_config'](bay) | json }}
    - mode: '0644'
    # a config HAProxy rejects is never put in place
    - check_cmd: /usr/sbin/haproxy -c -f
    - require:
      - pkg: bay-haproxy-package

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
    - onchanges:
      - pkg: bay-haproxy-package
    - require:
      - file: bay-haproxy-config
    - require_in:
      - service: bay-haproxy-service
