"""plantcdn: a local, high-fidelity stand-in for AWS S3 and CloudFront."""

__version__ = "0.1.0"
