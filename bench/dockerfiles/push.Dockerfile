# One step whose layer is blob.bin, 200 MiB of random data.
ARG BASE=127.0.0.1:5000/bench/busybox:latest
FROM ${BASE}
COPY blob.bin /
