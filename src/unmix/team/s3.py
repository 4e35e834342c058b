"""An s3:// artifacts destination for the team's MLflow server, checked before anything starts.

The server writes artifacts to S3 with boto3, which finds its keys the usual way
(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws) and a store other than
AWS (MinIO, Ceph, `rclone serve s3`) in MLFLOW_S3_ENDPOINT_URL. A missing key or a wrong
endpoint would otherwise show only when the first run uploads an artifact, as a client's
traceback after training; one request to the bucket here turns it into one line before the
database and the server start.
"""

from __future__ import annotations

from collections.abc import Mapping

from unmix.errors import UnmixError

SCHEME = "s3://"
ENDPOINT_VARIABLE = "MLFLOW_S3_ENDPOINT_URL"  # what MLflow reads; boto3 alone would not
PROBE_TIMEOUT_S = 10  # connect and read, one attempt: a live store answers in milliseconds


def is_s3(destination: str) -> bool:
    return destination.startswith(SCHEME)


def split_uri(uri: str) -> tuple[str, str]:
    """(bucket, key prefix) of `s3://bucket/prefix`; the prefix may be empty."""
    bucket, _, prefix = uri[len(SCHEME) :].partition("/")
    if not bucket:
        raise UnmixError(f"--artifacts-destination {uri!r}: no bucket (expected s3://BUCKET/PREFIX)")
    return bucket, prefix.strip("/")


def where(environ: Mapping[str, str]) -> str:
    """The store, as a user would name it: the endpoint, or AWS when none is set."""
    return environ.get(ENDPOINT_VARIABLE) or "AWS S3 (no MLFLOW_S3_ENDPOINT_URL)"


def missing_credentials(uri: str, environ: Mapping[str, str]) -> str:
    """The line for a destination whose keys boto3 cannot find; it names every variable to set."""
    line = f"--artifacts-destination {uri}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    line += " (or AWS_PROFILE, ~/.aws/credentials)"
    if not environ.get(ENDPOINT_VARIABLE):
        line += f", and {ENDPOINT_VARIABLE} for a store other than AWS (MinIO: http://HOST:9000)"
    return line


def bucket_problem(code: str, bucket: str) -> str:
    """What an S3 error code from HEAD bucket means for the user."""
    if code in ("404", "NoSuchBucket"):
        return f"no bucket {bucket!r}: create it first"
    if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return f"access to bucket {bucket!r} denied ({code}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    return f"bucket {bucket!r}: S3 error {code}"


def check_destination(uri: str, environ: Mapping[str, str]) -> str:
    """Raise one line unless the bucket of `uri` answers with these credentials; else say where it is."""
    bucket, _ = split_uri(uri)
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise UnmixError(
            f"--artifacts-destination {uri}: boto3 is missing: pip install -c constraints.txt -e ."
        ) from None
    session = boto3.Session()
    if session.get_credentials() is None:
        raise UnmixError(missing_credentials(uri, environ))
    config = Config(connect_timeout=PROBE_TIMEOUT_S, read_timeout=PROBE_TIMEOUT_S, retries={"max_attempts": 1})
    client = session.client("s3", endpoint_url=environ.get(ENDPOINT_VARIABLE) or None, config=config)
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "unknown"))
        raise UnmixError(f"--artifacts-destination {uri} at {where(environ)}: {bucket_problem(code, bucket)}") from None
    except BotoCoreError as error:
        raise UnmixError(f"--artifacts-destination {uri}: cannot reach {where(environ)}: {error}") from None
    return f"{uri} at {where(environ)}"
