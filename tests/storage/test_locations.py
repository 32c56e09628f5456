"""Cloud locations: every form users write parses to one canonical location; bad ones say why."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.models.files import check_location
from app.models.locations import CloudLocation, LocationError, StorageKind, parse_cloud

GCS = StorageKind.GCS
AZ = StorageKind.AZURE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gs://my-bucket/ref/genome.fa", CloudLocation(GCS, "my-bucket", "ref/genome.fa")),
        ("gs://my_bucket.example.org", CloudLocation(GCS, "my_bucket.example.org", "")),
        ("gs://b12/", CloudLocation(GCS, "b12", "")),
        (
            "https://labdata.blob.core.windows.net/runs/a%20b/x.bam",
            CloudLocation(AZ, "runs", "a b/x.bam", "labdata"),
        ),
        ("az://labdata/runs/x.bam", CloudLocation(AZ, "runs", "x.bam", "labdata")),
        ("hail-az://labdata/runs/dir/", CloudLocation(AZ, "runs", "dir/", "labdata")),
    ],
)
def test_cloud_locations_parse(text: str, expected: CloudLocation) -> None:
    assert parse_cloud(text) == expected


@pytest.mark.parametrize("text", ["data/ref.fa", "/abs/ref.fa", "file:///abs/ref.fa", "C:x"])
def test_local_locations_are_not_cloud(text: str) -> None:
    assert parse_cloud(text) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("gs:///obj", "no bucket name"),
        ("gs://UPPER/obj", "not a valid bucket name"),
        ("gs://ab/obj", "not a valid bucket name"),
        ("gs://bucket/a/../b", "'..' segment"),
        ("s3://bucket/key", "S3 is not supported"),
        ("https://example.com/c/x", "must be an Azure Blob URL"),
        ("https://acct.blob.core.windows.net/c1x/x?sv=1&sig=abc", "no query string"),
        ("az://Bad_Account/c/x", "not a valid storage account name"),
        ("az://labdata/", "no container name"),
        ("az://labdata/bad--name/x", "not a valid container name"),
        ("gs://bucket/" + "x" * 1025, "longer than 1024 bytes"),
    ],
)
def test_malformed_locations_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(LocationError, match=says):
        parse_cloud(text)


def test_canonical_form_and_join() -> None:
    scratch = parse_cloud("az://labdata/scratch/pool-a/")
    assert scratch is not None
    out = scratch.join("17", "3", "vcf.vcf.gz")
    assert str(out) == "https://labdata.blob.core.windows.net/scratch/pool-a/17/3/vcf.vcf.gz"
    assert parse_cloud(str(out)) == out
    assert scratch.as_prefix() == "pool-a/"
    root = parse_cloud("gs://bkt")
    assert root is not None
    assert root.as_prefix() == ""
    assert str(root.join("a b")) == "gs://bkt/a b"
    assert root.join("a b").url_path == "/bkt/a%20b"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("gs://UPPER/obj", "not a valid bucket name"),
        ("az://labdata/bad--name/x", "not a valid container name"),
        ("s3://bucket/key", "S3 is not supported"),
        ("gs://bucket", "names a bucket or container, not a file"),
        ("ftp://host/x", "unknown location scheme 'ftp'"),
    ],
)
def test_batch_files_check_locations_with_the_same_parser(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        check_location(text, Path("/tmp"))


def test_batch_files_keep_good_cloud_locations_as_written() -> None:
    for text in ("gs://my-bucket/a/b.bam", "az://labdata/runs/x.bam", "hail-az://labdata/runs/d/"):
        assert check_location(text, Path("/tmp")) == text
