# The full.Dockerfile steps without RUN: only config steps and one COPY of
# the 2,000-file context, so a rebuild costs context hashing and cache
# lookups and nothing else.
ARG BASE=127.0.0.1:5000/bench/busybox:latest
FROM ${BASE}
ENV APP_HOME=/app GREETING="hello forge"
WORKDIR /app
COPY files/ /app/files/
LABEL org.opencontainers.image.title=bench-nochange
ENTRYPOINT ["/bin/sh", "-c", "echo \"$GREETING: $(ls -R $APP_HOME/files | wc -l) entries\""]
