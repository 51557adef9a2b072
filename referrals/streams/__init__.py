"""A generic stream runtime on aiokafka: co-partitioned tasks, one transaction per task and
poll, durable state stores with changelogs, timers, waiting for a missing dependency, dead
letters, assignment and health. It knows nothing about referrals: topics, records and codecs
come in through its ports (`processor`, `topics`)."""
