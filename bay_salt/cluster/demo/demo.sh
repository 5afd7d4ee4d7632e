#!/bin/sh
# Bay's demo service: busybox httpd answering "SERVICE.GROUP INSTANCE vVERSION".
mkdir -p /www
echo ok > /www/healthz
printf '%s.%s %s v%s\n' "${BAY_SERVICE:-demo}" "${BAY_GROUP:-web}" "${BAY_INSTANCE:-$(hostname)}" "${VERSION}" > /www/index.html
exec httpd -f -p "${PORT:-8000}" -h /www
