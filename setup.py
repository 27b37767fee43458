"""The one thing pyproject.toml cannot say: install the checkout's api/ as the package clusterdeck itself (the public
API users import), app/ and jobs/ (every subpackage, found afresh on each build) as clusterdeck.app and
clusterdeck.jobs, and templates/ as clusterdeck/templates."""

from setuptools import find_packages, setup

ROOTS = {
    "clusterdeck": "api",
    "clusterdeck.app": "app",
    "clusterdeck.jobs": "jobs",
    "clusterdeck.templates": "templates",
}
found = find_packages(include=["app", "app.*", "jobs", "jobs.*"])
setup(
    packages=["clusterdeck"] + [f"clusterdeck.{name}" for name in found] + ["clusterdeck.templates"],
    package_dir=ROOTS,
)
