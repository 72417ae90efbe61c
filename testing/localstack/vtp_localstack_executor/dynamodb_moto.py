"""A DynamoDB provider for LocalStack backed by moto (test infrastructure).

LocalStack's own DynamoDB provider runs "DynamoDB Local" (a Java server) that
it downloads with a JDK from the web on first use; that fails on machines
that reach only the package registries. moto (``moto-ext``, already a
dependency of localstack-core) implements DynamoDB in Python, so this
provider forwards every DynamoDB call to moto through LocalStack's
``MotoFallbackDispatcher``. Selected with
``PROVIDER_OVERRIDE_DYNAMODB=vtp_moto`` (service.py sets it).

Limits: moto's DynamoDB (conditional writes, transactions, queries, TTL
attributes are implemented; streams are not wired to LocalStack's
dynamodbstreams provider, so leave ``dynamodbstreams`` out of SERVICES).
"""

from localstack.services.plugins import Service, aws_provider

PROVIDER_NAME = "vtp_moto"


@aws_provider(api="dynamodb", name=PROVIDER_NAME)
def dynamodb_vtp_moto():
    from localstack.aws.api.dynamodb import DynamodbApi
    from localstack.services.moto import MotoFallbackDispatcher

    class MotoDynamoDBProvider(DynamodbApi):
        """Implements nothing itself: every operation falls through to moto."""

    return Service.for_provider(MotoDynamoDBProvider(), dispatch_table_factory=MotoFallbackDispatcher)
