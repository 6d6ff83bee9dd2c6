"""Tests of settings.load (config.py plus DEPLOYHOOK_* overrides) and secret.SecretSource."""

from __future__ import annotations

import ast
import dataclasses
import os
import runpy
import stat
from pathlib import Path

import pytest

from deployhook import settings
from deployhook.errors import ConfigError, SecretMissing
from deployhook.secret import SecretSource, create_secret_file
from deployhook.settings import Config

ROOT = Path(__file__).parents[1]
SHIPPED_CONFIG = ROOT / "config.py"


def write(tmp_path: Path, text: str = "", name: str = "config.py") -> Path:
    """Write ``text`` as a config file in ``tmp_path`` and return its path."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def defaults_in(folder: Path, **values: object) -> Config:
    """The default Config for a config file in ``folder``, with ``values`` changed."""
    folder = folder.resolve()
    return Config(**{
        "secret_file": str(folder / "secret.txt"), "repo_path": str(folder),
        "state_db": str(folder / "deployhook.sqlite3"),
        "status_password_file": str(folder / "status-password.txt"),
        "fleet_key_file": str(folder / "fleet-key.txt"), **values,
    })


# --- defaults and paths -----------------------------------------------------------------------


def test_empty_config_gives_defaults(tmp_path: Path) -> None:
    """An empty config.py yields every documented default, paths next to the file."""
    config = settings.load(write(tmp_path), environ={})
    assert config == defaults_in(tmp_path)
    assert config.port == 8000
    assert config.branch is None
    assert config.submodules is True
    assert config.pull_strategy == "ff-only"
    assert config.post_deploy is None
    assert config.secret is None


def test_no_config_file_uses_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load(None) takes the defaults, relative to the current folder."""
    monkeypatch.chdir(tmp_path)
    assert settings.load(None, environ={}) == defaults_in(tmp_path)


def test_keys_match_config_fields() -> None:
    """KEYS is exactly Config's fields except the secret itself."""
    fields = {f.name for f in dataclasses.fields(Config)}
    assert set(settings.KEYS) == fields - {"secret"}
    assert len(settings.KEYS) == len(set(settings.KEYS))


@pytest.mark.parametrize(
    ("text", "secret_file", "repo_path"),
    [
        ('secret_file = "keys/secret.txt"\n', "keys/secret.txt", "."),
        ('repo_path = "site"\n', "secret.txt", "site"),
        ('repo_path = "../site"\nsecret_file = "../s.txt"\n', "../s.txt", "../site"),
        ('repo_path = "./a/./b/"\n', "secret.txt", "a/b"),
    ],
)
def test_relative_paths_resolve_against_config_folder(
    tmp_path: Path, text: str, secret_file: str, repo_path: str
) -> None:
    """Relative secret_file and repo_path are relative to the config file's folder."""
    folder = tmp_path / "etc" / "deployhook"
    config = settings.load(write(folder, text), environ={})
    assert config.secret_file == str((folder / secret_file).resolve())
    assert config.repo_path == str((folder / repo_path).resolve())


def test_relative_paths_ignore_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config given by a relative path still resolves against its own folder."""
    write(tmp_path / "conf", 'repo_path = "site"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(tmp_path)
    config = settings.load("conf/config.py", environ={})
    assert config.repo_path == str((tmp_path / "conf" / "site").resolve())
    assert config.secret_file == str((tmp_path / "conf" / "secret.txt").resolve())


def test_absolute_and_home_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Absolute paths are kept; '~' is the user's home folder."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    absolute = tmp_path / "srv" / "site"
    path = write(tmp_path / "conf", f'repo_path = {str(absolute)!r}\nsecret_file = "~/s.txt"\n')
    config = settings.load(path, environ={})
    assert config.repo_path == str(absolute.resolve())
    assert config.secret_file == str((home / "s.txt").resolve())


# --- unknown keys and wrong values ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("prot = 8000\n", "prot"),
        ("Port = 8000\n", "Port"),
        ("secret = 'hunter2'\n", "secret"),
        ("post_deploy_cmd = ['make']\n", "post_deploy_cmd"),
        ("branch = 'main'\nbrnach = 'main'\n", "brnach"),
    ],
)
def test_unknown_key_is_named_with_valid_keys(tmp_path: Path, text: str, key: str) -> None:
    """A typo stops loading with a message naming it and listing every valid key."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        settings.load(path, environ={})
    message = str(info.value)
    assert repr(key) in message
    assert str(path.resolve()) in message
    for valid in settings.KEYS:
        assert valid in message


def test_unknown_key_message_does_not_echo_value(tmp_path: Path) -> None:
    """A secret pasted under a wrong name is not repeated in the error."""
    with pytest.raises(ConfigError) as info:
        settings.load(write(tmp_path, "secret = 'hunter2-very-secret'\n"), environ={})
    assert "hunter2-very-secret" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('port = "80"', "port"),
        ("port = True", "port"),
        ("port = 80.0", "port"),
        ("port = None", "port"),
        ('submodules = "yes"', "submodules"),
        ("submodules = 1", "submodules"),
        ('post_deploy = "make html"', "post_deploy"),
        ('post_deploy = ["make", 1]', "post_deploy"),
        ('post_deploy = {"make": "html"}', "post_deploy"),
        ("branch = 1", "branch"),
        ("repository = ['octo-org/blog']", "repository"),
        ('git_timeout = "30"', "git_timeout"),
        ("git_timeout = True", "git_timeout"),
        ("max_body_size = 1.5", "max_body_size"),
        ("workers = None", "workers"),
        ("secret_file = None", "secret_file"),
        ("log_level = 10", "log_level"),
    ],
)
def test_wrong_type_names_key(tmp_path: Path, text: str, key: str) -> None:
    """A value of the wrong type is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=key):
        settings.load(write(tmp_path, text + "\n"), environ={})


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('pull_strategy = "fast-forward"', "pull_strategy"),
        ('pull_strategy = "FF-ONLY"', "pull_strategy"),
        ('reload = "restart"', "reload"),
        ('reload = ""', "reload"),
        ('log_level = "verbose"', "log_level"),
    ],
)
def test_bad_choice_names_key_and_choices(tmp_path: Path, text: str, key: str) -> None:
    """A value outside the choices names the key and lists the choices."""
    with pytest.raises(ConfigError) as info:
        settings.load(write(tmp_path, text + "\n"), environ={})
    message = str(info.value)
    assert key in message
    choices = {"pull_strategy": settings.PULL_STRATEGIES, "reload": settings.RELOAD_MODES}
    for choice in choices.get(key, ()):
        assert choice in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("port = 70000", "port"),
        ("port = -1", "port"),
        ('webhook_path = "github"', "webhook_path"),
        ("workers = 0", "workers"),
        ("max_body_size = 0", "max_body_size"),
        ("git_timeout = 0", "git_timeout"),
        ("response_timeout = -1.5", "response_timeout"),
        ("post_deploy_timeout = 0", "post_deploy_timeout"),
        ("post_deploy = []", "post_deploy"),
    ],
)
def test_out_of_range_names_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        settings.load(write(tmp_path, text + "\n"), environ={})


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('post_deploy = ["make", "html"]', "post_deploy", ("make", "html")),
        ('post_deploy = ("make",)', "post_deploy", ("make",)),
        ("git_timeout = 30", "git_timeout", 30.0),
        ("response_timeout = 2.5", "response_timeout", 2.5),
        ('branch = "release"', "branch", "release"),
        ("port = 0", "port", 0),
        ('reload = "exit"', "reload", "exit"),
        ('pull_strategy = "reset"', "pull_strategy", "reset"),
    ],
)
def test_valid_values(tmp_path: Path, text: str, key: str, expected: object) -> None:
    """Good values load; lists become tuples and whole seconds become floats."""
    config = settings.load(write(tmp_path, text + "\n"), environ={})
    value = getattr(config, key)
    assert value == expected
    assert type(value) is type(expected)


# --- environment overrides --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "key", "expected"),
    [
        ({"DEPLOYHOOK_PORT": "9000"}, "port", 9000),
        ({"DEPLOYHOOK_PORT": " 9000 "}, "port", 9000),
        ({"DEPLOYHOOK_SUBMODULES": "false"}, "submodules", False),
        ({"DEPLOYHOOK_SUBMODULES": "0"}, "submodules", False),
        ({"DEPLOYHOOK_SUBMODULES": "No"}, "submodules", False),
        ({"DEPLOYHOOK_SUBMODULES": "off"}, "submodules", False),
        ({"DEPLOYHOOK_SUBMODULES": "TRUE"}, "submodules", True),
        ({"DEPLOYHOOK_POST_DEPLOY": '["make","html"]'}, "post_deploy", ("make", "html")),
        ({"DEPLOYHOOK_POST_DEPLOY": ' ["make", "my file"]'}, "post_deploy", ("make", "my file")),
        ({"DEPLOYHOOK_POST_DEPLOY": "make html"}, "post_deploy", ("make", "html")),
        ({"DEPLOYHOOK_POST_DEPLOY": "sh -c 'make html && touch done'"}, "post_deploy",
         ("sh", "-c", "make html && touch done")),
        ({"DEPLOYHOOK_POST_DEPLOY": ""}, "post_deploy", None),
        ({"DEPLOYHOOK_BRANCH": ""}, "branch", None),
        ({"DEPLOYHOOK_BRANCH": "release"}, "branch", "release"),
        ({"DEPLOYHOOK_REPOSITORY": "octo-org/blog"}, "repository", "octo-org/blog"),
        ({"DEPLOYHOOK_GIT_TIMEOUT": "30"}, "git_timeout", 30.0),
        ({"DEPLOYHOOK_MAX_BODY_SIZE": "1024"}, "max_body_size", 1024),
        ({"DEPLOYHOOK_PULL_STRATEGY": "rebase"}, "pull_strategy", "rebase"),
        ({"DEPLOYHOOK_ADDRESS": "0.0.0.0"}, "address", "0.0.0.0"),
    ],
)
def test_environment_overrides_file(
    tmp_path: Path, environ: dict[str, str], key: str, expected: object
) -> None:
    """DEPLOYHOOK_<KEY> overrides the file's value, parsed to the key's type."""
    text = (
        'port = 8001\nsubmodules = True\npost_deploy = ["true"]\nbranch = "main"\n'
        'repository = "someone/else"\ngit_timeout = 60\nmax_body_size = 2048\n'
        'pull_strategy = "merge"\naddress = "127.0.0.2"\n'
    )
    config = settings.load(write(tmp_path, text), environ=environ)
    value = getattr(config, key)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("DEPLOYHOOK_GIT_TIMEOUT", "git_timeout"),
        ("DEPLOYHOOK_RESPONSE_TIMEOUT", "response_timeout"),
        ("DEPLOYHOOK_POST_DEPLOY_TIMEOUT", "post_deploy_timeout"),
    ],
)
def test_environment_fractional_seconds(tmp_path: Path, name: str, key: str) -> None:
    """Timeouts accept fractional seconds from the environment, as they do in config.py."""
    config = settings.load(write(tmp_path), environ={name: "2.5"})
    assert getattr(config, key) == 2.5


def test_environment_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    environ = {"DEPLOYHOOK_REPO_PATH": "site", "DEPLOYHOOK_SECRET_FILE": "keys/s.txt"}
    config = settings.load(write(tmp_path / "conf"), environ=environ)
    assert config.repo_path == str((tmp_path / "conf" / "site").resolve())
    assert config.secret_file == str((tmp_path / "conf" / "keys" / "s.txt").resolve())


def test_os_environ_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``environ`` the process environment is used."""
    monkeypatch.setenv("DEPLOYHOOK_PORT", "9001")
    assert settings.load(write(tmp_path)).port == 9001


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("", {"CREDENTIALS_DIRECTORY": "/run/credentials/deployhook.service"},
         "/run/credentials/deployhook.service/webhook-secret"),
        ('secret_file = "mine.txt"\n', {"CREDENTIALS_DIRECTORY": "/run/credentials/x"},
         "{folder}/mine.txt"),
        ("", {"CREDENTIALS_DIRECTORY": "/run/credentials/x", "DEPLOYHOOK_SECRET_FILE": "/s"},
         "/s"),
        ("", {"CREDENTIALS_DIRECTORY": ""}, "{folder}/secret.txt"),
    ],
    ids=["credential", "file wins", "environment wins", "empty directory"],
)
def test_systemd_credential_secret_file(
    tmp_path: Path, text: str, environ: dict[str, str], expected: str
) -> None:
    """Under systemd, an unset secret_file is $CREDENTIALS_DIRECTORY/webhook-secret."""
    config = settings.load(write(tmp_path, text), environ=environ)
    assert config.secret_file == expected.format(folder=tmp_path.resolve())


def test_other_environment_variables_are_ignored(tmp_path: Path) -> None:
    environ = {"PORT": "1", "HOME": "/nowhere", "deployhook_port": "2", "XDEPLOYHOOK_PORT": "3"}
    assert settings.load(write(tmp_path), environ=environ) == defaults_in(tmp_path)


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"DEPLOYHOOK_FOO": "1"}, "DEPLOYHOOK_FOO"),
        ({"DEPLOYHOOK_PROT": "80"}, "'prot'"),
        ({"DEPLOYHOOK_": "x"}, "DEPLOYHOOK_"),
        ({"DEPLOYHOOK_PORT": "eighty"}, "DEPLOYHOOK_PORT"),
        ({"DEPLOYHOOK_PORT": ""}, "DEPLOYHOOK_PORT"),
        ({"DEPLOYHOOK_PORT": "80.5"}, "DEPLOYHOOK_PORT"),
        ({"DEPLOYHOOK_PORT": "99999"}, "port"),
        ({"DEPLOYHOOK_SUBMODULES": "maybe"}, "DEPLOYHOOK_SUBMODULES"),
        ({"DEPLOYHOOK_SUBMODULES": ""}, "DEPLOYHOOK_SUBMODULES"),
        ({"DEPLOYHOOK_WORKERS": "four"}, "DEPLOYHOOK_WORKERS"),
        ({"DEPLOYHOOK_GIT_TIMEOUT": "soon"}, "DEPLOYHOOK_GIT_TIMEOUT"),
        ({"DEPLOYHOOK_POST_DEPLOY": '["make", 1]'}, "post_deploy"),
        ({"DEPLOYHOOK_POST_DEPLOY": "[]"}, "post_deploy"),
        ({"DEPLOYHOOK_RELOAD": "restart"}, "reload"),
    ],
)
def test_bad_environment_is_config_error(environ: dict[str, str], needle: str) -> None:
    """An unknown or unparseable DEPLOYHOOK_* variable is a ConfigError naming it."""
    with pytest.raises(ConfigError) as info:
        settings.load(None, environ=environ)
    assert needle in str(info.value)


def test_unknown_environment_variable_lists_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        settings.load(None, environ={"DEPLOYHOOK_FOO": "1"})
    assert "'foo'" in str(info.value)
    for key in settings.KEYS:
        assert key in str(info.value)


@pytest.mark.parametrize("raw", ['["make", "html"', "[make]", 'make "html'])
def test_unparseable_post_deploy_environment(raw: str) -> None:
    """A malformed DEPLOYHOOK_POST_DEPLOY is a ConfigError, not a traceback."""
    with pytest.raises(ConfigError, match="DEPLOYHOOK_POST_DEPLOY"):
        settings.load(None, environ={"DEPLOYHOOK_POST_DEPLOY": raw})


@pytest.mark.parametrize("raw", ["s3cret", "  s3cret\n", "s3cret\n"])
def test_secret_from_environment_is_hidden(tmp_path: Path, raw: str) -> None:
    """DEPLOYHOOK_SECRET sets Config.secret (stripped) and never shows in repr()."""
    config = settings.load(write(tmp_path), environ={"DEPLOYHOOK_SECRET": raw})
    assert config.secret == b"s3cret"
    assert "s3cret" not in repr(config)
    assert "s3cret" not in str(config)
    assert "secret=" not in repr(config)


def test_empty_secret_environment_is_none(tmp_path: Path) -> None:
    assert settings.load(write(tmp_path), environ={"DEPLOYHOOK_SECRET": ""}).secret is None


def test_secret_is_not_a_config_file_key(tmp_path: Path) -> None:
    """The secret comes from the environment or its file, never from config.py."""
    with pytest.raises(ConfigError, match="'secret'"):
        settings.load(write(tmp_path, 'secret = "s3cret"\n'), environ={})


# --- the config file itself -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["missing.py", "folder"])
def test_missing_config_file(tmp_path: Path, name: str) -> None:
    """No config file: a ConfigError that says how to create one."""
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError) as info:
        settings.load(tmp_path / name, environ={})
    assert "deployhook init" in str(info.value)
    assert str((tmp_path / name).resolve()) in str(info.value)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("port = 1 / 0\n", "ZeroDivisionError"),
        ("port = \n", "SyntaxError"),
        ("import no_such_module_for_deployhook\n", "ModuleNotFoundError"),
    ],
)
def test_config_file_that_fails_to_run(tmp_path: Path, text: str, error: str) -> None:
    """A config.py that raises is reported as a ConfigError naming the file and error."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        settings.load(path, environ={})
    assert error in str(info.value)
    assert str(path.resolve()) in str(info.value)


def test_config_file_calling_exit(tmp_path: Path) -> None:
    """sys.exit() in config.py is a ConfigError too, not the end of the process."""
    path = write(tmp_path, "import sys\nsys.exit(3)\n")
    with pytest.raises(ConfigError, match="SystemExit"):
        settings.load(path, environ={})


def test_private_names_imports_and_functions_are_allowed(tmp_path: Path) -> None:
    """Helpers in config.py (imports, functions, classes, _names) are not settings."""
    text = (
        "import os\n"
        "import os.path as osp\n"
        "from pathlib import Path\n"
        "from shlex import split\n"
        "from functools import partial\n"
        "_here = Path(__file__).parent\n"
        "_PORT = 9100\n"
        "def pick_port() -> int:\n"
        "    return _PORT\n"
        "class _Helper:\n"
        "    pass\n"
        "class Helper:\n"
        "    pass\n"
        "double = lambda x: 2 * x\n"
        "port = pick_port()\n"
        "workers = double(3)\n"
        'repo_path = osp.join(str(_here), "site")\n'
        'post_deploy = split("make html")\n'
    )
    config = settings.load(write(tmp_path, text), environ={})
    assert config.port == 9100
    assert config.workers == 6
    assert config.repo_path == str((tmp_path / "site").resolve())
    assert config.post_deploy == ("make", "html")


def test_imported_builtin_function_is_allowed(tmp_path: Path) -> None:
    """An imported C function (os.cpu_count) is a helper, not a setting."""
    text = "from os import cpu_count\nworkers = max(1, cpu_count() or 1)\n"
    assert settings.load(write(tmp_path, text), environ={}).workers >= 1


def test_shipped_config_loads_with_documented_defaults() -> None:
    """The repository's config.py loads cleanly and shows exactly the defaults."""
    config = settings.load(SHIPPED_CONFIG, environ={})
    assert config == defaults_in(ROOT)


def test_shipped_config_documents_every_key() -> None:
    """Every key in settings.KEYS is assigned in config.py, with its default value."""
    tree = ast.parse(SHIPPED_CONFIG.read_text())
    assigned = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    # Commented out so that the shipped unit's LoadCredential= is used (README.Debian).
    commented = {"secret_file", "status_password_file"}
    for key in commented:
        assert f'\n# {key} = "{getattr(Config, key)}"' in SHIPPED_CONFIG.read_text(), key
    missing = set(settings.KEYS) - assigned - commented
    assert not missing, f"config.py does not document {sorted(missing)}"
    namespace = runpy.run_path(str(SHIPPED_CONFIG))
    assert namespace["targets"] == {}  # no targets: the one target "default"
    for key in settings.KEYS:
        if key not in (*settings._PATH_KEYS, "targets"):  # resolved paths, checked above
            default = getattr(Config, key)
            value = settings._coerce(key, namespace[key])
            assert value == default, f"{key}: {value!r} != {default!r}"


# --- the secret file --------------------------------------------------------------------------


def test_secret_file_missing(tmp_path: Path) -> None:
    """A missing file is SecretMissing (500) naming the path."""
    path = tmp_path / "nope" / "secret.txt"
    with pytest.raises(SecretMissing) as info:
        SecretSource(str(path)).get()
    assert info.value.status == 500
    assert str(path) in info.value.reason
    assert "not found" in info.value.reason


@pytest.mark.parametrize("content", [b"", b"\n", b"  \t\r\n "])
def test_secret_file_empty(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "secret.txt"
    path.write_bytes(content)
    with pytest.raises(SecretMissing) as info:
        SecretSource(str(path)).get()
    assert info.value.status == 500
    assert str(path) in info.value.reason


def test_secret_file_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(SecretMissing) as info:
        SecretSource(str(tmp_path)).get()
    assert info.value.status == 500
    assert str(tmp_path) in info.value.reason


def test_secret_file_placeholder(tmp_path: Path) -> None:
    """A copy of secret.txt.example is refused: it is no secret."""
    path = tmp_path / "secret.txt"
    path.write_bytes((ROOT / "secret.txt.example").read_bytes())
    with pytest.raises(SecretMissing) as info:
        SecretSource(str(path)).get()
    assert info.value.status == 500
    assert str(path) in info.value.reason
    assert "deployhook init" in info.value.reason
    assert "replace-me" not in info.value.reason


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"s3cret", b"s3cret"),
        (b"s3cret\n", b"s3cret"),
        (b"  s3cret \r\n", b"s3cret"),
        (b"\ts3 cret\n\n", b"s3 cret"),
        ("caf\u00e9\n".encode(), "caf\u00e9".encode()),
    ],
)
def test_secret_whitespace_stripped(tmp_path: Path, content: bytes, expected: bytes) -> None:
    path = tmp_path / "secret.txt"
    path.write_bytes(content)
    assert SecretSource(str(path)).get() == expected


def _bump_mtime(path: Path, seconds: int = 2) -> None:
    """Move the file's mtime forward, as a later edit would."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def test_secret_rotation_in_place(tmp_path: Path) -> None:
    """Rewriting the file (same or other length) is picked up without a restart."""
    path = tmp_path / "secret.txt"
    path.write_bytes(b"first-secret\n")
    source = SecretSource(str(path))
    assert source.get() == b"first-secret"
    path.write_bytes(b"second-secret-longer\n")
    assert source.get() == b"second-secret-longer"
    path.write_bytes(b"third-secret-longer!\n")  # same length: mtime tells it apart
    _bump_mtime(path)
    assert source.get() == b"third-secret-longer!"
    assert source.get() == b"third-secret-longer!"


def test_secret_rotation_by_rename(tmp_path: Path) -> None:
    """An atomic replace (new inode) of the same length is picked up."""
    path = tmp_path / "secret.txt"
    path.write_bytes(b"a" * 64 + b"\n")
    source = SecretSource(str(path))
    assert source.get() == b"a" * 64
    st = path.stat()
    new = tmp_path / "secret.txt.new"
    new.write_bytes(b"b" * 64 + b"\n")
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the same mtime
    os.replace(new, path)
    assert source.get() == b"b" * 64


def test_secret_rotation_within_one_mtime_tick(tmp_path: Path) -> None:
    """A same-length rewrite in the same timestamp tick is still picked up."""
    path = tmp_path / "secret.txt"
    path.write_bytes(b"a" * 64 + b"\n")
    source = SecretSource(str(path))
    assert source.get() == b"a" * 64
    st = path.stat()
    path.write_bytes(b"b" * 64 + b"\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # a coarse clock: same tick
    assert source.get() == b"b" * 64


def test_secret_deleted_and_restored(tmp_path: Path) -> None:
    """A deleted file is noticed at once; a restored one works again."""
    path = tmp_path / "secret.txt"
    path.write_bytes(b"s3cret\n")
    source = SecretSource(str(path))
    assert source.get() == b"s3cret"
    path.unlink()
    with pytest.raises(SecretMissing):
        source.get()
    path.write_bytes(b"s3cret\n")
    assert source.get() == b"s3cret"


def test_secret_never_in_repr(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_bytes(b"top-s3cret-value\n")
    source = SecretSource(str(path))
    source.get()
    assert "top-s3cret-value" not in repr(source)
    assert "top-s3cret-value" not in str(source)
    assert str(path) in repr(source)
    fixed = SecretSource(str(path), b"fixed-s3cret-value")
    assert fixed.get() == b"fixed-s3cret-value"
    assert "fixed-s3cret-value" not in repr(fixed)


def test_fixed_secret_needs_no_file(tmp_path: Path) -> None:
    """A secret from $DEPLOYHOOK_SECRET replaces the file entirely."""
    assert SecretSource(str(tmp_path / "none.txt"), b"from-env").get() == b"from-env"


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o077])
def test_create_secret_file(tmp_path: Path, umask: int) -> None:
    """A fresh secret file is private (0600), random, and readable by SecretSource."""
    path = tmp_path / "secret.txt"
    old = os.umask(umask)
    try:
        assert create_secret_file(str(path)) is True
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    value = SecretSource(str(path)).get()
    assert len(value) == 64
    int(value, 16)
    other = tmp_path / "other.txt"
    assert create_secret_file(str(other))
    assert SecretSource(str(other)).get() != value


def test_create_secret_file_does_not_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_bytes(b"keep me\n")
    path.chmod(0o640)
    assert create_secret_file(str(path)) is False
    assert path.read_bytes() == b"keep me\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_no_test_only_fault_switch() -> None:
    """The daemon ships no test-only switch (issue 10, bug 4): the old stall switch
    DEPLOYHOOK_TEST_STALL_FILE is an unknown setting like any other, and no module
    reads it; tests/test_systemd.py stalls the daemon from outside (SIGSTOP)."""
    with pytest.raises(ConfigError) as info:
        settings.load(None, environ={"DEPLOYHOOK_TEST_STALL_FILE": "/run/stall"})
    assert "DEPLOYHOOK_TEST_STALL_FILE" in str(info.value)
    package = Path(settings.__file__).parent
    assert not [path.name for path in package.glob("*.py") if "STALL" in path.read_text()]
