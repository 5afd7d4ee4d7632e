# Every minion the master accepts becomes a Bay node.
base:
  '*':
    - bay
