# syntax=docker/dockerfile:1
# One image for both halves of Castellan: `castellan operator` (the Helm chart's Deployment)
# and `castellan sidecar` (the container the operator adds to every object-host and
# queue-host pod). It is the image `castellan image build` assembles without Docker
# (local/image/build.ts), built here where Docker exists: the sources compiled by tsc
# to JavaScript (tsconfig.image.json) and bundled by esbuild (local/image/bundle.ts),
# production dependencies only, Node 24, user
# 65532, and no npm or compiler in the final stage. Nothing writes to the root
# filesystem (the chart and the operator mount /tmp as an emptyDir).
#
#   docker build -t <registry>/castellan:0.1.0 . && docker push <registry>/castellan:0.1.0
#
# (Without Docker: `castellan image build`, then `docker load -i .castellan/images/castellan.tar`
# on a machine that has it, or `skopeo copy docker-archive:.castellan/images/castellan.tar
# docker://<registry>/castellan:0.1.0`.)

ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.image.json ./
COPY cli ./cli
COPY common ./common
COPY sidecar ./sidecar
COPY operator ./operator
COPY local ./local
RUN node node_modules/typescript/bin/tsc -p tsconfig.image.json --outDir /out/tsc \
 && node local/image/bundle.ts /out/tsc /out/app/dist \
 && printf '#!/usr/bin/env node\n// The `castellan` command (the bundled JavaScript, local/image/bundle.ts).\nimport "../dist/main.js";\n' > /out/app/bin-castellan.js

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force \
 && find node_modules \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.md' \) -type f -delete

FROM ${NODE_IMAGE} AS runtime
# A 1 MB young-generation semi-space and two malloc arenas keep an idle sidecar small (with the
# bundle: 75-77 MiB RSS; local/image/build.ts imageRuntimeEnv has the measurements).
ENV NODE_ENV=production \
    CASTELLAN_LOG_LEVEL=info \
    NODE_OPTIONS=--max-semi-space-size=1 \
    MALLOC_ARENA_MAX=2
WORKDIR /app
# npm, npx and corepack are not needed at run time
RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY --from=build /out/app/ ./
RUN mkdir -p bin && mv bin-castellan.js bin/castellan.js && chmod 0755 bin/castellan.js \
 && ln -s /app/bin/castellan.js /usr/local/bin/castellan \
 && castellan --help >/dev/null
# 65532: the conventional "nonroot" uid/gid; the chart's runAsUser matches.
USER 65532:65532
EXPOSE 3600 3601 8080
ENTRYPOINT ["castellan"]
CMD ["--help"]
