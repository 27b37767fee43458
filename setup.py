"""The one thing pyproject.toml cannot say: install the checkout's app/ and jobs/ (every subpackage, found
afresh on each build) as clusterdeck.app and clusterdeck.jobs, and templates/ as clusterdeck/templates."""

from setuptools import find_packages, setup

ROOTS = {"clusterdeck.app": "app", "clusterdeck.jobs": "jobs", "clusterdeck.templates": "templates"}
found = find_packages(include=["app", "app.*", "jobs", "jobs.*"])
setup(packages=[f"clusterdeck.{name}" for name in found] + ["clusterdeck.templates"], package_dir=ROOTS)
