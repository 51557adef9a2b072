"""The gRPC API (`referrals run api`): ingest for systems that cannot speak Kafka, the advocate
portal, operator and finance commands. It sits above the three stream services (the layers
contract in pyproject.toml): it calls the same functions as the CLI commands of the same job
(the rewards service's operator client, reconciliation, program put, erasure), so the two can
never disagree. Protos: schemas/proto/referrals/v1/."""
