"""twistd plugin: ``twistd -n plantcdn``."""

from twisted.application.service import ServiceMaker

plantcdn = ServiceMaker(
    "plantcdn",
    "plantcdn.tap",
    "Local AWS S3 + CloudFront stand-in for Plant-DB",
    "plantcdn",
)
