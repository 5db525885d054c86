"""What is specific to S3: metadata, ``vl-expire`` tags and lifecycle rules, read back with a plain
boto3 client so the assertions do not trust the store's own reading."""
from __future__ import annotations

import uuid
from datetime import timedelta, timezone

from app.image_store.backends import ALLOWED_TTL_DAYS, S3Store

EXPECTED_RULES = {
    f"vl-expire-{ttl}": {
        "ID": f"vl-expire-{ttl}",
        "Expiration": {"Days": ttl},
        "Filter": {"Tag": {"Key": "vl-expire", "Value": str(ttl)}},
        "Status": "Enabled",
    }
    for ttl in ALLOWED_TTL_DAYS
}


def oid() -> str:
    return str(uuid.uuid4())


def rules_of(s3_client, bucket: str) -> dict[str, dict]:
    return {r["ID"]: r for r in s3_client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}


def tags_of(s3_client, bucket: str, key: str) -> dict[str, str]:
    tag_set = s3_client.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return {t["Key"]: t["Value"] for t in tag_set}


def test_created_bucket_has_one_rule_per_ttl(s3_store: S3Store, s3_client) -> None:
    s3_store.create_bucket("samples", ttl_days=14)
    physical = s3_store.bucket_prefix + "samples"
    assert rules_of(s3_client, physical) == EXPECTED_RULES
    bucket_tags = s3_client.get_bucket_tagging(Bucket=physical)["TagSet"]
    assert {t["Key"]: t["Value"] for t in bucket_tags} == {"vl-expire": "14"}


def test_objects_carry_account_metadata_and_ttl_tag(s3_store: S3Store, s3_client) -> None:
    s3_store.create_bucket("objects", ttl_days=30)
    physical = s3_store.bucket_prefix + "objects"
    default, own, forever, system = oid(), oid(), oid(), oid()
    s3_store.put("objects", default, b"d", account_id="acc-1", content_type="application/pdf")
    s3_store.put("objects", own, b"o", account_id="acc-1", ttl_days=5)
    s3_store.put("objects", forever, b"f", account_id="acc-2", ttl_days=-1)
    s3_store.put("objects", system, b"s", account_id=None)

    head = s3_client.head_object(Bucket=physical, Key=default)
    assert head["Metadata"] == {"account-id": "acc-1"}
    assert head["ContentType"] == "application/pdf"
    assert s3_client.head_object(Bucket=physical, Key=system)["Metadata"] == {}
    assert tags_of(s3_client, physical, default) == {"vl-expire": "30"}
    assert tags_of(s3_client, physical, own) == {"vl-expire": "5"}
    assert tags_of(s3_client, physical, forever) == {"vl-expire": "-1"}

    # The store's expiry date is the server's last-modified plus the tag, in UTC.
    last_modified = s3_client.head_object(Bucket=physical, Key=own)["LastModified"]
    expected = last_modified.astimezone(timezone.utc) + timedelta(days=5)
    assert s3_store.head("objects", own, "acc-1").expires_at == expected


def test_untagged_object_in_bucket_without_ttl(s3_store: S3Store, s3_client) -> None:
    s3_store.create_bucket("plain")
    object_id = oid()
    s3_store.put("plain", object_id, b"x", account_id="a")
    assert tags_of(s3_client, s3_store.bucket_prefix + "plain", object_id) == {}


def test_set_ttl_retags_and_keeps_foreign_tags(s3_store: S3Store, s3_client) -> None:
    s3_store.create_bucket("objects")
    physical = s3_store.bucket_prefix + "objects"
    object_id = oid()
    s3_store.put("objects", object_id, b"x", account_id="a", ttl_days=90)
    s3_client.put_object_tagging(Bucket=physical, Key=object_id, Tagging={"TagSet": [
        {"Key": "vl-expire", "Value": "90"}, {"Key": "project", "Value": "demo"}]})
    s3_store.set_ttl("objects", object_id, "a", 2)
    assert tags_of(s3_client, physical, object_id) == {"vl-expire": "2", "project": "demo"}
    assert s3_store.head("objects", object_id, "a").ttl_days == 2


def test_migration_adds_rules_and_tags_untagged_objects(s3_store: S3Store, s3_client) -> None:
    physical = s3_store.bucket_prefix + "legacy"
    # A bucket made by someone else, with its own lifecycle rule and pre-existing objects.
    s3_client.create_bucket(Bucket=physical)
    foreign_rule = {"ID": "archive-logs", "Expiration": {"Days": 400},
                    "Filter": {"Prefix": "logs/"}, "Status": "Enabled"}
    s3_client.put_bucket_lifecycle_configuration(Bucket=physical,
                                                 LifecycleConfiguration={"Rules": [foreign_rule]})
    untagged = [oid() for _ in range(3)]
    for key in untagged:
        s3_client.put_object(Bucket=physical, Key=key, Body=b"old")
    pinned = oid()
    s3_client.put_object(Bucket=physical, Key=pinned, Body=b"old", Tagging="vl-expire=-1&owner=x")
    s3_store.set_bucket_ttl("legacy", 60)

    skipped = s3_store.migrate_lifecycle("legacy", tag_existing=False)
    assert (skipped.rules_added, skipped.objects_tagged) == (len(ALLOWED_TTL_DAYS), 0)
    assert all(tags_of(s3_client, physical, key) == {} for key in untagged)
    assert rules_of(s3_client, physical) == {**EXPECTED_RULES, "archive-logs": foreign_rule}

    report = s3_store.migrate_lifecycle("legacy")
    assert (report.rules_added, report.objects_tagged) == (0, 3)
    assert all(tags_of(s3_client, physical, key) == {"vl-expire": "60"} for key in untagged)
    assert tags_of(s3_client, physical, pinned) == {"vl-expire": "-1", "owner": "x"}
    assert s3_store.migrate_lifecycle("legacy") == report.__class__(rules_added=0, objects_tagged=0)


def test_bucket_prefix_isolates_deployments(s3_store: S3Store, moto_endpoint: str) -> None:
    neighbour = S3Store(endpoint_url=moto_endpoint, access_key="k", secret_key="s",
                        bucket_prefix=f"n{uuid.uuid4().hex[:10]}-")
    s3_store.create_bucket("samples")
    neighbour.create_bucket("samples")  # same logical name, different physical bucket
    assert s3_store.list_buckets() == neighbour.list_buckets() == ["samples"]
