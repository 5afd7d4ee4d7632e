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
