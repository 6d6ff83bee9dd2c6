# deployhook in a container: docs/container.rst.
#
#   docker build -t deployhook .            (or: podman build --format docker ...)
#
# BASE_IMAGE is any Debian-like image with python3 >= 3.11 and its venv module;
# git, openssh-client, tini and ca-certificates are installed from its apt sources
# when it lacks them.  Offline builds replace the "wheels" stage with a directory
# holding wheels/ built on a machine with an index (podman/buildx):
#   pip wheel . -w DIR/wheels && podman build --build-context wheels=DIR ...
ARG BASE_IMAGE=python:3.11-slim

# 1. Wheels of deployhook and its dependencies, built from the source.
FROM ${BASE_IMAGE} AS wheels
WORKDIR /src
COPY setup.py pyproject.toml README.rst ./
COPY deployhook ./deployhook
RUN python3 -m venv /tmp/build \
 && /tmp/build/bin/pip wheel --no-cache-dir --quiet . -w /wheels

# 2. A virtual environment with deployhook installed from those wheels only.
FROM ${BASE_IMAGE} AS venv
COPY --from=wheels /wheels/ /tmp/wheels/
RUN python3 -m venv /opt/deployhook \
 && /opt/deployhook/bin/pip install --no-cache-dir --quiet --no-index \
        --find-links /tmp/wheels deployhook \
 && /opt/deployhook/bin/pip uninstall --yes --quiet pip

# 3. The image: git and ssh, tini as PID 1, an unprivileged user.
FROM ${BASE_IMAGE}
# The deployhook user's ids: make them the bind-mounted checkout's owner
# (--build-arg UID=$(stat -c %u CHECKOUT) --build-arg GID=$(stat -c %g CHECKOUT)).
ARG UID=10001
ARG GID=10001
RUN set -eu; missing=""; \
    command -v git >/dev/null || missing="$missing git"; \
    command -v ssh >/dev/null || missing="$missing openssh-client"; \
    [ -x /usr/bin/tini ] || missing="$missing tini"; \
    [ -d /etc/ssl/certs ] || missing="$missing ca-certificates"; \
    if [ -n "$missing" ]; then \
        apt-get update -q; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing; \
        apt-get clean; rm -rf /var/lib/apt/lists/*; \
    fi; \
    groupadd --gid "$GID" deployhook; \
    useradd --uid "$UID" --gid "$GID" --home-dir /var/lib/deployhook --no-create-home \
        --shell /usr/sbin/nologin deployhook; \
    install -d -o deployhook -g deployhook -m 0750 /var/lib/deployhook; \
    install -d -o deployhook -g deployhook -m 0755 /srv/site; \
    git config --system --add safe.directory '*'
COPY --from=venv /opt/deployhook /opt/deployhook
COPY contrib/container/config.py /etc/deployhook/config.py
ENV PATH=/opt/deployhook/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/deployhook
USER deployhook
WORKDIR /var/lib/deployhook
VOLUME ["/var/lib/deployhook"]
EXPOSE 8000
# /health answers 200 {"status": "ok"} without credentials.  The port is
# $DEPLOYHOOK_PORT when set, else the image config's 8000.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('DEPLOYHOOK_PORT', '8000'), timeout=4)"]
# tini is PID 1: it forwards SIGTERM/SIGINT/SIGHUP to deployhook and reaps orphans
# (git's and post_deploy's); deployhook drains, answers "stopped" and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "deployhook"]
CMD ["serve", "--config", "/etc/deployhook/config.py"]
