# tollgate container image.
#   docker build -t tollgate:local .
#   docker run --rm -p 8080:8080 --env-file .env -v "$PWD/config:/app/config:ro" tollgate:local
#
# Base: Debian bookworm-slim rather than Alpine. Node's musl (Alpine) builds are only an
# "experimental" platform upstream, and musl's DNS resolver behaves differently from glibc's
# in ways that bite a gateway whose whole job is outbound HTTPS (search domains and ndots in
# Kubernetes, large responses). The slim image costs a few tens of MB more; it is glibc, so any
# native addon added later installs from its prebuilt binaries instead of compiling.
# Override with --build-arg NODE_IMAGE=node:24-bookworm-slim@sha256:... to pin a digest.
ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: full dependencies, TypeScript -> dist/ ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Manifests first, so the dependency layer is reused while only sources change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies and the compiled output only ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no production dependency needs an install script, and running none keeps
# third-party code out of the image build.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
# Owned by root and not writable by the `node` user: the process cannot alter its own code or
# config. The config baked in here is a default; mount ./config over /app/config to use yours.
COPY --from=build /app/dist ./dist
COPY config ./config

# The gateway refuses 0.0.0.0 when no teams are configured (no open relay), so the config used
# with this image must define teams.
ENV TOLLGATE_HOST=0.0.0.0 TOLLGATE_PORT=8080
EXPOSE 8080
USER node

# node:*-slim ships no curl or wget; Node's built-in fetch does the probe instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.TOLLGATE_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# Exec-form CMD: node is PID 1 and receives SIGTERM itself (no shell in between to swallow it),
# so the gateway drains (/readyz turns 503) and closes cleanly.
STOPSIGNAL SIGTERM
CMD ["node", "dist/cli.js", "serve"]
