{%- from "bay/map.jinja" import bay with context %}
{#- The cluster's image registry, on nodes with role `registry`. #}
{%- if 'registry' in bay.node.roles %}
bay-registry-package:
  pkg.installed:
    - name: docker-registry

bay-registry-config:
  file.managed:
    - name: /etc/docker/registry/config.yml
    - contents: {{ salt['bay.registry_config'](bay) | json }}
    - require:
      - pkg: bay-registry-package

bay-registry-service:
  service.running:
    - name: docker-registry
    - enable: True
    - init_delay: 1
    - watch:
      - file: bay-registry-config
{%- endif %}
