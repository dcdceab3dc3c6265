# Config steps, four RUN steps (one writes 50 MiB of random data and one
# deletes a file of an earlier layer) and a COPY of the 2,000-file context.
ARG BASE=127.0.0.1:5000/bench/busybox:latest
FROM ${BASE}
ENV APP_HOME=/app GREETING="hello forge"
WORKDIR /app
RUN echo hi > /a
RUN mkdir -p /data && dd if=/dev/urandom of=/data/blob bs=1M count=50
RUN rm /a
COPY files/ /app/files/
RUN test ! -e /a && test -s /data/blob && find /app/files -type f | wc -l > /app/count
ENTRYPOINT ["/bin/sh", "-c", "echo \"$GREETING: $(cat /app/count) files in $APP_HOME/files\""]
