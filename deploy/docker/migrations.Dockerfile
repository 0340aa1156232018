# A coordinator image with a migration set baked in: the coordinator image
# plus migrations/ at /migrations (its default --migrations-dir). Build one per
# release of the set, tagged like the application release that needs it, from
# the directory that holds migrations/ (here: the repository root):
#
#   docker build -f deploy/docker/migrations.Dockerfile \
#     --build-arg SCHEMAGATED_IMAGE=schemagate/schemagated:0.1.0 \
#     -t registry.example.com/billing/schemagate:1.8.0 .
#
# Use it wherever deploy/ runs schemagate/schemagated (Kubernetes: the
# `images:` entry of your overlay). The alternative, mounting the files from
# a ConfigMap or a volume at /migrations, is in docs/deploy.md.
ARG SCHEMAGATED_IMAGE=schemagate/schemagated:0.1.0
FROM ${SCHEMAGATED_IMAGE}
COPY migrations/ /migrations/
# Fail the build, naming file and line, on a set that cannot load or that
# the linter rejects (unsafe locks, unmarked drops and renames, SQL errors):
# the coordinator would refuse to apply it anyway.
RUN ["schemagatectl", "lint", "--migrations-dir", "/migrations"]
