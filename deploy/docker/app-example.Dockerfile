# How an application image takes the agent: an example to adapt (the app
# here is a binary /app/server; paths, names and versions are placeholders).
#
#   docker build -f deploy/docker/app-example.Dockerfile --build-arg APP_VERSION=1.8.0 \
#     -t registry.example.com/billing/app:1.8.0 .
#
# schemagate-agent is a static executable: it needs no shared library and no
# package, so the base image can be anything (Debian or Ubuntu of any
# release, Alpine, distroless, scratch); docs/deploy.md shows the line for
# each.
FROM debian:12-slim

COPY --from=schemagate/agent:0.1.0 /usr/local/bin/schemagate-agent /usr/local/bin/schemagate-agent

# The app ships its own migration files: the agent takes K (highest version),
# R (highest non-breaking version) and the checksums from them.
COPY migrations/ /app/migrations/
COPY server /app/server

# The version the fleet view (`schemagatectl instances`) shows for this image.
ARG APP_VERSION=0.0.0-dev
ENV SCHEMAGATE_APP=billing \
    SCHEMAGATE_APP_VERSION=${APP_VERSION}

RUN groupadd --gid 10001 app && useradd --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin app
USER 10001:10001

# The agent runs as PID 1 and supervises the app: it waits until the schema
# fits, starts /app/server, forwards signals, and keeps this instance
# registered (so contract migrations wait for it) while the app lives.
ENTRYPOINT ["schemagate-agent", "wait", "--migrations-dir", "/app/migrations", "--timeout", "5m", "--", "/app/server"]
