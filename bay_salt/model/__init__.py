"""What users declare and what everything is called: the one definition of
every shared name (:mod:`.names`), the service specs service developers write
(:mod:`.services`), the ``bay:`` pillar schema (:mod:`.settings`) and the size
and duration units they share (:mod:`.units`). No I/O here."""
