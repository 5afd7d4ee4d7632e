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
