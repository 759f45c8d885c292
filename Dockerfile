# syntax=docker/dockerfile:1
# One image for both halves of Castellan: `castellan operator` (the Helm chart's Deployment)
# and `castellan sidecar` (the container the operator adds to every object-host and
# queue-host pod). Node 24 runs the TypeScript sources directly (type stripping), so
# there is no compile step: stage 1 installs the production dependencies, stage 2 is
# the runtime with only what the two commands load. Runs as a non-root user; nothing
# writes to the root filesystem (the chart and the operator mount /tmp as an emptyDir).
#
#   docker build -t ghcr.io/castellan-dev/castellan:0.1.0 .

ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    CASTELLAN_LOG_LEVEL=info
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY cli ./cli
COPY common ./common
COPY sidecar ./sidecar
COPY operator ./operator
COPY local ./local
RUN chmod 0755 /app/bin/castellan.js \
 && ln -s /app/bin/castellan.js /usr/local/bin/castellan \
 && castellan --help >/dev/null
# 65532: the conventional "nonroot" uid/gid; the chart's runAsUser matches.
USER 65532:65532
EXPOSE 3600 8080
ENTRYPOINT ["castellan"]
CMD ["--help"]
