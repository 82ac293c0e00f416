#!/bin/sh
# A shell CGI script, mounted from sample/001-embed/mounts.json (no class written for it).
printf 'Content-Type: text/plain; charset=utf-8\r\n\r\n'
printf 'Status page of %s, served by a shell script through cgiApp.\n' "${SERVER_NAME}"
printf 'Mounted at %s (from mounts.json); you are %s.\n' "${SCRIPT_NAME}" "${REMOTE_USER:-anonymous}"
printf 'Server time: %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
