# Example pillar top file: every minion gets the `bay` pillar.
base:
  '*':
    - bay
    - services
