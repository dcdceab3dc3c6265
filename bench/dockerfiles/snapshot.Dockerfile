# A RUN that creates 10 files. A new BUST value misses the cache of the RUN
# only, so each build measures one RUN plus its snapshot over BASE.
ARG BASE=127.0.0.1:5000/bench/busybox:latest
FROM ${BASE}
ARG BUST
RUN echo "$BUST" > /bust && touch /a1 /a2 /a3 /a4 /a5 /a6 /a7 /a8 /a9
