"""A local S3 fake: moto's server mode on 127.0.0.1, spoken to with the real S3 protocol.

S3 is the remote side of the worker fleet's storage, so a fake of it is right in tests; our
storage code talks to it with the real boto3 client, over HTTP, like to any S3 endpoint.
"""

from __future__ import annotations

from types import TracebackType

import boto3
from moto.server import ThreadedMotoServer

ACCESS_KEY = "AKIATESTFAKEKEY00000"
SECRET_KEY = "fake-secret-key-for-the-s3-fake-0000000000"
REGION = "us-east-1"


class FakeS3:
    """`with FakeS3() as s3:` runs the fake on a free port; `s3.env` are the AWS_* variables."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.url = ""

    def __enter__(self) -> FakeS3:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.stop()

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }

    def create_bucket(self, name: str) -> None:
        client = boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )
        client.create_bucket(Bucket=name)
