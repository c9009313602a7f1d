"""plantcdn: a local, high-fidelity stand-in for AWS S3 and CloudFront, on Twisted."""

from setuptools import find_packages, setup

RUNTIME = [
    "twisted>=24.3",
    "klein>=24.8",
    "treq>=24.9",
    "botocore>=1.34",
    "attrs>=23.1",
    "python-dotenv>=1.0",  # .env parsing exactly as docker-compose/Django users expect
    "python-multipart>=0.0.13",  # streaming multipart/form-data parser for presigned POST
    "awscrt>=0.20",  # C implementations of CRC32C and CRC64NVME, as botocore itself uses
    "cryptography>=42",  # RSA-SHA1 verification of CloudFront signed URLs
    "defusedxml>=0.7",  # XML request bodies without entity expansion
    "prometheus-client>=0.20",  # /_plantcdn/metrics exposition
]
TESTS = [
    "pytest>=8",
    "pytest-twisted>=1.14",
    "hypothesis>=6.100",
    "boto3>=1.34",
    "treq>=24.9",
    "urllib3>=2",
    "django>=4.2",  # django-storages end-to-end tests
    "django-storages>=1.14",
    "Pillow>=10",  # archived_processors reference worker only; never imported by plantcdn
    "bandit>=1.7",  # the package must scan clean (tests/test_packaging.py, starter.sh scan)
    "pip-audit>=2.7",  # starter.sh scan: known vulnerabilities of the installed dependencies
    "awscli>=1.32",  # AWS CLI end-to-end tests (aws s3 cp/ls/rm/sync against plantcdn)
]
DEV = ["ruff==0.17.6", "mypy>=1.10"]  # ruff pinned: the lint step must not change under CI

setup(
    name="plantcdn",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.11",
    packages=[*find_packages(include=["plantcdn", "plantcdn.*"]), "twisted.plugins"],
    package_data={"twisted.plugins": ["plantcdn_plugin.py"]},
    install_requires=RUNTIME,
    extras_require={"test": TESTS, "dev": DEV + TESTS},
)
