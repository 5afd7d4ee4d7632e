{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import bay with context %}
{#- Apache Kafka for services' logs on nodes with role `kafka` (docs/logs.md):
    one KRaft node (broker and controller in one JVM) from Maven Central's
    jars, clients with SASL SCRAM on the node's address, the controller on
    loopback; and, where bay:logs:archive:hdfs is set, the archiver that
    writes the log topics into HDFS. A site's own Kafka: bay:kafka:bootstrap,
    and no node with role kafka. #}
include:
  - {{ tplroot }}.python
{%- if 'kafka' in bay.node.roles and not bay.kafka.bootstrap %}
{%- set k = salt['bay_logs.kafka_layout']() %}
{%- set files = salt['bay_logs.kafka_files']() %}

bay-kafka-java:
  pkg.installed:
    - name: {{ k.java_package }}
    - unless: test -x /usr/bin/java

bay-kafka-user:
  user.present:
    - name: {{ k.user }}
    - system: True
    - home: {{ k.data_dir }}
    - createhome: False
    - shell: /usr/sbin/nologin

bay-kafka-data:
  file.directory:
    - name: {{ k.data_dir }}
    - user: {{ k.user }}
    - mode: '0750'
    - makedirs: True
    - require:
      - user: bay-kafka-user

# Kafka's jars from Maven Central, unless they are there (`bay up` lends the host's cache)
bay-kafka-maven:
  pkg.installed:
    - name: maven
    - unless: test -f {{ k.lib_dir }}/.complete

bay-kafka-pom:
  file.managed:
    - name: {{ k.pom }}
    - source: salt://{{ tplroot }}/files/kafka/pom.xml
    - makedirs: True

bay-kafka-jars:
  cmd.run:
    - name: mvn -q -B -f {{ k.pom }} dependency:copy-dependencies -DoutputDirectory={{ k.lib_dir }} && touch {{ k.lib_dir }}/.complete
    - unless: test -f {{ k.lib_dir }}/.complete
    - require:
      - pkg: bay-kafka-maven
      - file: bay-kafka-pom
{%- for path, f in files.items() | sort %}

bay-kafka-file-{{ path }}:
  file.managed:
    - name: {{ path }}
    - contents: {{ f.contents | json }}
    - mode: '{{ f.mode }}'
    - user: {{ f.user | default('root') }}
    - makedirs: True
    - show_changes: False
    - require:
      - file: bay-kafka-data
{%- endfor %}

bay-kafka-format:
  cmd.run:
    - name: {{ k.format }}
    - runas: {{ k.user }}
    - creates: {{ k.formatted }}
    - require:
      - cmd: bay-kafka-jars
      - pkg: bay-kafka-java
      - file: bay-kafka-file-{{ k.format }}
      - file: bay-kafka-file-{{ k.config }}

bay-kafka-systemd-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: bay-kafka-file-/etc/systemd/system/bay-kafka.service
{%- if k.archive %}
      - file: bay-kafka-file-/etc/systemd/system/bay-log-archiver.service
{%- endif %}

bay-kafka-service:
  service.running:
    - name: bay-kafka
    - enable: True
    - require:
      - cmd: bay-kafka-format
      - cmd: bay-kafka-systemd-reload
    - watch:
      - file: bay-kafka-file-{{ k.config }}
      - file: bay-kafka-file-/etc/systemd/system/bay-kafka.service

# the broker answers before anything that needs it goes on
bay-kafka-ready:
  cmd.run:
    - name: timeout 120 bash -c 'until (echo > /dev/tcp/{{ bay.node.address }}/{{ bay.kafka.port }}) 2>/dev/null; do sleep 0.5; done'
    - onchanges:
      - service: bay-kafka-service
{%- if k.archive %}

bay-log-archiver-service:
  service.running:
    - name: bay-log-archiver
    - enable: True
    - require:
      - service: bay-kafka-service
      - cmd: bay-kafka-systemd-reload
      - sls: {{ tplroot }}.python
    - watch:
      - file: bay-kafka-file-/etc/bay/log-archiver.json
      - file: bay-kafka-file-/etc/systemd/system/bay-log-archiver.service
{%- endif %}
{%- set srch = salt['bay_logs.search_layout']() %}
{%- if srch.indexer %}
{%- set sfiles = salt['bay_logs.search_files']() %}
{%- for path, f in sfiles.items() | sort %}

bay-search-file-{{ path }}:
  file.managed:
    - name: {{ path }}
    - contents: {{ f.contents | json }}
    - mode: '{{ f.mode }}'
    - makedirs: True
    - show_changes: False
{%- endfor %}
{%- if srch.embedded %}

# Bay's OpenSearch (docs/logs.md): Maven's jars laid out as a distribution, on loopback
bay-search-user:
  user.present:
    - name: {{ srch.user }}
    - system: True
    - home: {{ srch.data_dir }}
    - createhome: False
    - shell: /usr/sbin/nologin

bay-search-data:
  file.directory:
    - name: {{ srch.data_dir }}
    - user: {{ srch.user }}
    - mode: '0750'
    - makedirs: True
    - require:
      - user: bay-search-user

bay-search-pom:
  file.managed:
    - name: {{ srch.pom }}
    - source: salt://{{ tplroot }}/files/search/pom.xml
    - makedirs: True

bay-search-jars:
  cmd.run:
    - name: mvn -q -B -f {{ srch.pom }} dependency:copy-dependencies -DoutputDirectory={{ srch.lib_dir }} && touch {{ srch.lib_dir }}/.complete
    - unless: test -f {{ srch.lib_dir }}/.complete
    - require:
      - pkg: bay-kafka-maven
      - file: bay-search-pom
{%- endif %}

bay-search-systemd-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: bay-search-file-/etc/systemd/system/bay-log-indexer.service
{%- if srch.embedded %}
      - file: bay-search-file-/etc/systemd/system/bay-search.service

bay-search-service:
  service.running:
    - name: bay-search
    - enable: True
    - require:
      - cmd: bay-search-jars
      - file: bay-search-data
      - pkg: bay-kafka-java
      - cmd: bay-search-systemd-reload
      - sls: {{ tplroot }}.python
    - watch:
      - file: bay-search-file-/etc/systemd/system/bay-search.service
{%- endif %}

bay-log-indexer-service:
  service.running:
    - name: bay-log-indexer
    - enable: True
    - require:
      - service: bay-kafka-service
      - cmd: bay-search-systemd-reload
      - sls: {{ tplroot }}.python
    - watch:
      - file: bay-search-file-/etc/bay/log-indexer.json
      - file: bay-search-file-/etc/systemd/system/bay-log-indexer.service
{%- endif %}
{%- endif %}
