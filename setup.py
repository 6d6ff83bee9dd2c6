"""Install deployhook and its ``deployhook`` command."""

import ast
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def version() -> str:
    """``__version__`` of deployhook/version.py, the one place it is written, read
    without importing the package (whose dependencies may not be installed yet).

    Raises:
        LookupError: the file assigns no string to ``__version__``.
    """
    tree = ast.parse((HERE / "deployhook" / "version.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and getattr(node.targets[0], "id", None) == "__version__"
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            return node.value.value
    raise LookupError("deployhook/version.py assigns no string to __version__")


INSTALL_REQUIRES = ["tornado>=6.4.2,<7", "GitPython>=3.1.41,<4",
                    # /metrics imports it at its first scrape; small, so always installed
                    "prometheus-client>=0.20,<1"]
EXTRAS = {
    # fleet mode (redis_url): docs/fleet.rst
    "fleet": ["redis>=5.0.1"],
    # Swagger UI's files for GET /docs (about 25 MB); without it /docs answers 503
    # naming the package, and /openapi.json is served all the same
    "apidocs": ["swagger-ui-py>=23.9.23"],
    # notifications (notify: Apprise URLs): docs/reporting.rst
    "notify": ["apprise>=1.7"],
    # the documentation: python -m sphinx -b html docs OUT (and -b man)
    "docs": ["sphinx>=7.2", "furo>=2024.1.29"],
    # making and checking a release: python -m build; twine check dist/*
    "release": ["build>=1.0", "twine>=5"],
}
# Everything tests/run.sh and .ci/run need: the test tools, and every optional part the
# tests exercise (fleet, /docs, notifications, the documentation build, the packaging test).
EXTRAS["test"] = ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "ruff>=0.6",
                  "hypothesis>=6.100", "atheris>=2.3", "schemathesis>=3.30",
                  *EXTRAS["fleet"], *EXTRAS["apidocs"], *EXTRAS["notify"], *EXTRAS["docs"],
                  *EXTRAS["release"]]

setup(
    name="deployhook",
    version=version(),
    description="Keep a server's git checkout in step with GitHub pushes",
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["deployhook", "deployhook.*"]),
    # The status page's templates, the OpenAPI document and the pages' scripts are read
    # from the installed package (tests/test_packaging.py checks the wheel holds them).
    package_data={"deployhook": ["web/templates/*.html", "web/openapi.json", "web/docs.js",
                                "web/static/live.js"]},
    include_package_data=False,  # package_data alone: MANIFEST.in would make data dirs packages
    # Lower bounds: the lowest versions the tests pass with (.ci/lowest.txt; .ci/run tests
    # them as well as the newest).
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["deployhook = deployhook.cli.main:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: Tornado",
        "Topic :: Software Development :: Version Control :: Git",
    ],
)
