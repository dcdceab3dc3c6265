# One step whose layer is the 1 GiB file big.bin, so the build time is
# dominated by writing, hashing and compressing that layer.
ARG BASE=127.0.0.1:5000/bench/busybox:latest
FROM ${BASE}
COPY big.bin /
