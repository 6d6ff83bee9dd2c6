"""Install deployhook and its ``deployhook`` command."""

from setuptools import find_packages, setup

setup(
    name="deployhook",
    version="0.1.0",
    description="Keep a server's git checkout in step with GitHub pushes",
    long_description=open("README.rst", encoding="utf-8").read(),
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
                    "test": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5",
                             "ruff>=0.6", "hypothesis>=6.100", "atheris>=2.3",
                             "schemathesis>=3.30", "redis>=5.0.1"]},
    entry_points={"console_scripts": ["deployhook = deployhook.cli.main:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: Tornado",
        "Topic :: Software Development :: Version Control :: Git",
    ],
)
