# deployhook's settings inside the container image (docs/container.rst).  Each DEPLOYHOOK_* variable overrides the key of the same name, so
# compose.yaml and `podman run -e` change settings without a file; a config.py
# mounted over this one replaces these defaults (set the paths below in it too).
address = "0.0.0.0"  # the runtime publishes the port; 127.0.0.1 would be unreachable
port = 8000
repo_path = "/srv/site"  # the bind-mounted checkout
secret_file = "/run/secrets/webhook-secret"  # a compose / podman secret
status_password_file = "/run/secrets/status-password"  # optional: no file, API closed
state_db = "/var/lib/deployhook/deployhook.sqlite3"  # the volume /var/lib/deployhook
# After a deploy that moved HEAD: exit 0 and let the runtime restart the container
# (restart: unless-stopped).  "autoreload" re-executes in place instead.
reload = "exit"
