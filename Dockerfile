# leakscan in a container: slim, runs as a non-root user, git included (history scans).
#
#   docker build -t leakscan .
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/scan:ro" leakscan scan /scan   # a checkout, all its history
#   docker run --rm -i leakscan scan - < some.log                                         # standard input
#   docker run --rm -e HF_TOKEN leakscan repo user/model                                  # a Hub repository
#
# Git refuses a repository owned by another user (safe.directory), and leakscan's git reads no
# system config: run as the owner of the mounted checkout (--user), as above. The caches go to
# /tmp/leakscan, writable by any user; mount a volume there to keep them between runs.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY leakscan ./leakscan
COPY detectors ./detectors
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 leakscan
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER leakscan
WORKDIR /home/leakscan
ENV LEAKSCAN_CACHE_DIR=/tmp/leakscan PYTHONDONTWRITEBYTECODE=1
ENTRYPOINT ["leakscan"]
CMD ["--help"]
