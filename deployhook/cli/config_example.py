# deployhook configuration: module-level settings, read when the daemon starts.
# Every key is optional; the value shown is the default.  An unknown key or a
# value of the wrong type stops the daemon at start-up with the reason.
# Relative paths are relative to this file's folder.  Each key can also be set
# with an environment variable DEPLOYHOOK_<KEY> (e.g. DEPLOYHOOK_PORT=9000),
# and the secret itself with DEPLOYHOOK_SECRET.  See docs/configuration.rst.

# Where to listen.  Put a TLS-terminating proxy in front for GitHub.
address = "127.0.0.1"
port = 8000
webhook_path = "/github"

# The webhook secret (the same text as in GitHub's webhook settings).
# 'deployhook init' writes a fresh random one here.  Left commented out so that,
# under the shipped systemd unit, LoadCredential=webhook-secret:/etc/deployhook/
# secret.txt is used: set this line only to read another file.
# secret_file = "secret.txt"

# The checkout to keep in step.  "." is this folder: deployhook deploys itself.
repo_path = "."
remote = "origin"
branch = None              # None: the checkout's current branch
repo_url = None            # set to clone into repo_path when it does not exist yet
repository = None          # "owner/name"; None: taken from the remote's GitHub URL
submodules = True          # git submodule update --init --recursive after each update

# Deploy keys are per repository: a private key for this checkout's remote (ssh only),
# used alone (IdentitiesOnly).  None: ssh's own keys.
ssh_key = None

# Which forge sends the deliveries: "github", "gitlab", "gitea", "forgejo", "gogs",
# "bitbucket" (Cloud) or "bitbucket-server" (Data Center).  None: detected from the
# delivery's headers.  Pin it so that a delivery shaped like another forge's is refused.
forge = None

# Deploy tags instead of a branch: e.g. "v*" deploys the newest pushed tag matching the
# pattern (checked out detached) and ignores branch pushes.  None: deploy the branch.
tags = None

# How to update: "ff-only" (refuses if local history diverged), "merge",
# "rebase", or "reset" (the only one that discards local changes).
pull_strategy = "ff-only"

# A command run in the checkout after each update that moved HEAD, as an
# argument list (no shell), e.g. ["make", "html"].  It gets DEPLOYHOOK_BEFORE,
# DEPLOYHOOK_AFTER, DEPLOYHOOK_REF, DEPLOYHOOK_HEAD_BEFORE, ... in its environment.
post_deploy = None
post_deploy_timeout = 300.0

# A command run in the checkout before an update, as an argument list (no shell), e.g.
# ["touch", "maintenance.flag"].  It gets the same DEPLOYHOOK_* facts as post_deploy
# (no DEPLOYHOOK_HEAD_AFTER yet).  If it fails, the deploy stops with its reason and
# nothing changes (HEAD and the work tree stay).  Not run for a first clone.
pre_deploy = None
pre_deploy_timeout = 300.0

# A command run after any failed deploy run (argument list, no shell), with the reason
# in DEPLOYHOOK_REASON, e.g. to alert someone or undo what pre_deploy did.  Its own
# failure is only recorded.
on_failure = None
on_failure_timeout = 60.0

# After a deploy that moved HEAD: "auto" re-executes this process when the
# checkout holds its code (deployhook's own, or the script embedding it) and
# otherwise leaves it alone; "autoreload" always re-executes, "exit" ends it
# cleanly for a supervisor to restart, "none" does nothing.
reload = "auto"

response_timeout = 8.0     # answer GitHub within this; later outcomes go to /health
git_timeout = 120.0        # kill any git command (hooks included) that takes longer
lock_timeout = 900.0       # give up waiting for another deploy of this checkout
max_body_size = 27262976   # 26 MiB: a little over GitHub's 25 MB cap
workers = 4                # threads for git work
stop_timeout = 60.0        # on SIGTERM, wait this long for a running deploy
log_level = "info"

# What clients without a valid signature can cost.  At max_connections the
# oldest idle (then unverified) connection is closed to make room.  Bodies are
# hashed as they arrive; those over 256 KiB, or past unverified_memory bytes in
# all, wait in temporary files (at most unverified_disk bytes), and large
# payloads are parsed in a child process.
max_connections = 400      # lowered at start-up to fit the open-files limit
idle_timeout = 60.0        # seconds to send a request's headers
body_timeout = 60.0        # seconds to send a request's body
unverified_memory = 16777216   # 16 MiB
unverified_disk = 1073741824   # 1 GiB
refused_delay = 0.5        # seconds a sender refused often this minute waits for its 401

# The deployment record (SQLite): every delivery and deploy run, kept for
# 'deployhook history', /deployments and the status page; replays of a delivery
# ID that already deployed are answered from it.  Keep the newest keep_runs runs
# of each target, none older than keep_days.
state_db = "deployhook.sqlite3"
keep_runs = 1000
keep_days = 90.0

# The status page (GET /), the JSON API (GET /deployments) and the details of
# /health show the deployment record: they need HTTP basic auth as status_user
# with the password in status_password_file ('deployhook init' writes a random
# one, mode 0600; under systemd, leave that line out and use
# LoadCredential=status-password:/etc/deployhook/status-password.txt).
# status_access = "loopback" opens them without a password to requests from this
# machine that came through no proxy; never use it behind a proxy on this
# machine (a bare proxy_pass makes every internet client look local).
# allowed_hosts: extra Host names (besides localhost and loopback IPs) that
# "loopback" accepts, e.g. a name in /etc/hosts pointing at 127.0.0.1.
status_access = "password"
status_user = "deployhook"
# status_password_file = "status-password.txt"  # commented out: as secret_file
allowed_hosts = []

# Optional allow-list for the webhook: CIDRs, e.g. GitHub's "hooks" ranges from
# https://api.github.com/meta.  Empty: any address (the signature still decides).
# X-Forwarded-For is believed only from trusted_proxies (e.g. ["127.0.0.1"] when
# nginx on this machine forwards to deployhook).
allowed_networks = []
trusted_proxies = []

# Reporting to the forge: report = "status" sets a commit status (context
# deployhook/<target>) on each pushed commit, pending when its run starts and
# success or failure when it ends; "deployment" (GitHub) records a Deployment to an
# environment named for the target instead.  Needs forge set (not gogs) and a token
# in report_token_file (under systemd leave it out and use
# LoadCredential=report-token-<target>:/path); api_url: None for the forge's public
# API, e.g. "https://git.example.com/api/v1" for a self-hosted one.  public_url:
# where the status pages are reachable, for links from the forge to each run.
report = None
report_token_file = None
api_url = None
public_url = None

# Notifications (pip install 'deployhook[notify]'): Apprise URLs told of the runs
# notify_on names ("failure", "recovery": a success after a failure, "success"), e.g.
# ["slack://TokenA/TokenB/TokenC", "ntfys://ntfy.sh/my-topic"]; with public_url each
# message links to its run.  They hold tokens: never logged or shown.
notify = []
notify_on = ["failure", "recovery"]

# Several sites in one daemon: a dict from a name (a-z, 0-9, '-', '_') to that target's
# settings.  Each target answers at /hooks/<name>; the keys above about one checkout
# (repo_path, remote, branch, repository, repo_url, submodules, pull_strategy, ssh_key,
# forge, tags, pre_deploy, post_deploy, on_failure and their timeouts, reload, secret_file,
# git_timeout, report, report_token_file, api_url, notify, notify_on) are the defaults for
# every target.
# Empty: one target, "default", made of the keys above.
# targets = {
#     "blog": {"repo_path": "/srv/blog", "repository": "octo-org/blog", "branch": "main",
#              "post_deploy": ["make", "html"]},
#     "docs": {"repo_path": "/srv/docs", "repository": "group/docs", "forge": "gitlab",
#              "secret_file": "docs.secret"},
# }
targets = {}

# Atomic releases (docs/releases.rst): deploy_mode = "releases" builds each
# deploy in releases_path/releases/<UTC time>-<short sha> (a clone sharing repo_path's
# objects; repo_path is then only the store that is fetched into), runs post_deploy
# inside it, then switches the symlink releases_path/current to it atomically.  After
# the switch, activate (an argument list, e.g. ["systemctl", "reload", "myapp"]) runs
# and health_url must answer 2xx within health_timeout seconds; either failing switches
# current back ("rolled back: ...").  shared_paths are linked into every release from
# releases_path/shared/; keep_releases releases are kept (at least 2).  Each of these
# keys may also be set per target.
deploy_mode = "in-place"
releases_path = None  # e.g. "/srv/site"
health_url = None  # e.g. "http://127.0.0.1/health"
health_timeout = 10.0
activate = None  # e.g. ["systemctl", "reload", "myapp"]
shared_paths = []
keep_releases = 5
# In a fleet (below), "together": every server builds the release, and all switch
# current once every live server has built it; "each": each as soon as its own is built.
fleet_switch = "together"

# Polling (docs/deploying.rst, "Polling"): every poll_interval seconds (±10%) the daemon asks
# each target's remote (git ls-remote) for the deployed branch's tip (or newest matching
# tag) and deploys a tip no delivery brought (trigger "poll": check the forge's
# webhook); every target is asked once at start too.  0: never poll.  May be set per
# target.
poll_interval = 180.0

# Several servers behind a balancer (docs/fleet.rst): every server's
# daemon names the same Redis in redis_url (e.g. "redis://127.0.0.1:6379/0",
# "rediss://..." for TLS); the one that receives a delivery records the desired commit
# there and each server brings its own checkout to it.  Its password: a file
# (redis_password_file; under systemd, when unset, $CREDENTIALS_DIRECTORY/redis-password),
# never in the URL you commit.  node: this server's name (None: the host name);
# reconcile_interval: seconds between checks against the desired commit (a safety net
# for lost notifications).  redis_url = None: one server, no Redis at all.
# fleet_key_file: the key every node signs the desired commits and outcomes it writes
# with; nodes refuse what it does not sign, so whoever can write Redis cannot choose
# what runs.  The same file on every node, never in Redis ('deployhook init' writes
# one; under systemd, when present, $CREDENTIALS_DIRECTORY/fleet-key).
redis_url = None
redis_password_file = None
redis_ca_file = None  # rediss://: the CA (PEM) that signed Redis's certificate
fleet_key_file = "fleet-key.txt"
node = None
reconcile_interval = 60.0
