{#- Reactor (master config `reactor:`, salt/minion/*/start): a minion that
    (re)starts gets Bay's modules, grains and engines at once, so a rebuilt or
    newly bootstrapped node can run bay_docker and fire bay/ events before any
    state is applied. Container events go straight to the bay_controller
    engine (no runner hop on the failure path). -#}
{%- if data.get('id') %}
bay_sync_modules:
  local.saltutil.sync_all:
    - tgt: {{ data['id'] | yaml_encode }}
    - tgt_type: list
{%- endif %}
