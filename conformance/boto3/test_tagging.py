"""Object tagging through boto3: tag sets and the tag count on GET."""

TAGS = [{"Key": "project", "Value": "flexdrive"}, {"Key": "tier", "Value": "gold"}]


def test_object_tags_round_trip_and_are_counted_on_get(s3, bucket):
    s3.put_object(Bucket=bucket, Key="tagged", Body=b"x", Tagging="initial=yes")
    assert s3.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"] == [
        {"Key": "initial", "Value": "yes"}]
    s3.put_object_tagging(Bucket=bucket, Key="tagged", Tagging={"TagSet": TAGS})
    assert s3.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"] == TAGS
    assert s3.get_object(Bucket=bucket, Key="tagged")["TagCount"] == 2
    s3.delete_object_tagging(Bucket=bucket, Key="tagged")
    assert s3.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"] == []
    assert "TagCount" not in s3.get_object(Bucket=bucket, Key="tagged")
