#!/bin/sh
# Bay's demo service: busybox httpd answering "SERVICE.GROUP INSTANCE vVERSION".
mkdir -p /www
echo ok > /www/healthz
printf '%s.%s %s v%s\n' "${BAY_SERVICE:-demo}" "${BAY_GROUP:-web}" "${BAY_INSTANCE:-$(hostname)}" "${VERSION}" > /www/index.html
# its output (what `bay logs` shows) and a log record through the node's relay
# into Kafka (the line protocol: one JSON object per line; docs/logs.md)
echo "demo ${BAY_SERVICE:-demo}.${BAY_GROUP:-web} ${BAY_INSTANCE:-$(hostname)} v${VERSION} listening on ${PORT:-8000}"
if [ -n "${BAY_LOG_HOST}" ]; then
    printf '{"level":"info","message":"started v%s","port":%s}\n' "${VERSION}" "${PORT:-8000}" |
        nc -w 2 "${BAY_LOG_HOST}" "${BAY_LOG_PORT}" &
fi
exec httpd -f -p "${PORT:-8000}" -h /www
