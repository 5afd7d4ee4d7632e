{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import bay with context %}
# What Bay's modules import, in the Python that runs the salt-minion.
bay-python-packages:
  pip.installed:
    - pkgs: {{ bay.python.packages | json }}
    - bin_env: {{ bay.python.bin_env }}
{%- if bay.python.find_links %}
    - find_links: {{ bay.python.find_links | json }}
{%- endif %}
    - no_index: {{ bay.python.no_index }}

# The formula's defaults on the node itself: Bay's runtime calls (a container's
# start, the node report) read them here instead of asking a master's file
# server each time (a round trip, and a wait when that master is down). A new
# formula reaches the node with the next state.apply, as everything else does.
bay-python-defaults:
  file.managed:
    - name: /etc/bay/defaults.yaml
    - source: salt://{{ tplroot }}/defaults.yaml
    - makedirs: True
    - mode: "0644"
