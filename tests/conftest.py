import logging

# Salt's log handlers flush once more at interpreter exit, after pytest has
# closed its capture streams; without this every run ends in pages of
# "--- Logging error ---" that hide the real result.
logging.raiseExceptions = False
