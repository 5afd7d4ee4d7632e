# salt-run state.orchestrate orch.deploy pillar='{"service": "NAME"}'
{%- set service = pillar.get('service') %}
bay-deploy-{{ service }}:
  bay_service.running:
    - name: {{ service }}
