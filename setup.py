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


setup(
    name="deployhook",
    version=version(),
    description="Keep a server's git checkout in step with GitHub pushes",
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["deployhook", "deployhook.*"]),
    package_data={"deployhook": ["web/templates/*.html", "web/openapi.json", "web/docs.js",
                                "web/static/live.js"]},
    include_package_data=True,
    install_requires=["tornado>=6.3,<7", "GitPython>=3.1.41,<4",
                      "prometheus-client>=0.20,<1", "swagger-ui-py>=23.9"],
    extras_require={"fleet": ["redis>=5.0.1"],  # fleet mode (redis_url): README "Several servers"
                    "test": ["pytest>=8", "pytest-timeout>=2.3", "ruff>=0.6",
                             "hypothesis>=6.100", "atheris>=2.3",
                             "schemathesis>=3.30", "redis>=5.0.1"]},
    entry_points={"console_scripts": ["deployhook = deployhook.cli.main:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: Tornado",
        "Topic :: Software Development :: Version Control :: Git",
    ],
)
