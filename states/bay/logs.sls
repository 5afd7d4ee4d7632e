{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import bay with context %}
{#- Logs on every node (docs/logs.md): bay-logs keeps removed containers'
    output (cleaned up by age and by the node's cap), serves output live and
    kept over HTTPS to holders of a token the master signed, and relays the
    services' log lines into Kafka. #}
# what this part needs, so `state.apply bay.logs` works on its own
include:
  - {{ tplroot }}.python
  - {{ tplroot }}.docker
{%- if bay.logs.enabled %}
{%- set files = salt['bay_logs.files']() %}

bay-logs-dir:
  file.directory:
    - name: {{ bay.logs.dir }}
    - mode: '0700'
    - makedirs: True
{%- for path, f in files.items() | sort %}

bay-logs-file-{{ path }}:
  file.managed:
    - name: {{ path }}
    - contents: {{ f.contents | json }}
    - mode: '{{ f.mode }}'
    - makedirs: True
    - show_changes: False
{%- endfor %}

bay-logs-systemd-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: bay-logs-file-/etc/systemd/system/bay-logs.service

bay-logs-service:
  service.running:
    - name: bay-logs
    - enable: True
    - require:
      - cmd: bay-logs-systemd-reload
      - file: bay-logs-dir
      - sls: {{ tplroot }}.python
    - watch:
      - file: bay-logs-file-/etc/bay/logs.json
      - file: bay-logs-file-/etc/systemd/system/bay-logs.service
{%- endif %}
