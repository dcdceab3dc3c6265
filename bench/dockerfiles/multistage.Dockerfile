# examples/multistage/Dockerfile with the Debian base from the local
# registry (DEBIAN), so that every tool starts from the same image. The
# apt step prints the time before and after apt-get, which run.sh reports
# as the time of the command itself in each tool's sandbox.

ARG DEBIAN=debian:bookworm
FROM ${DEBIAN} AS build
# apt keeps what it downloads, so the cache mounts below keep the packages
# between builds. Images made like Debian's official one delete them after
# each install through docker-clean.
RUN rm -f /etc/apt/apt.conf.d/docker-clean \
 && echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' > /etc/apt/apt.conf.d/keep-cache
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    date '+apt-start %s.%N' \
 && apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && date '+apt-end %s.%N'
WORKDIR /src
COPY hello.c .
RUN gcc -static -O2 -Wall -Werror -o /hello hello.c && strip /hello

FROM scratch
COPY --from=build /hello /hello
ENTRYPOINT ["/hello"]
