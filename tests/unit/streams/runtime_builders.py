"""A StreamRuntime built for unit tests: never connected to Kafka, one input topic."""

from __future__ import annotations

from typing import Any

from referrals.platform.metrics import Health, RuntimeMetrics
from referrals.platform.settings import KafkaSettings, ServiceSettings
from referrals.streams.processor import Processor
from referrals.streams.runtime import StreamRuntime
from referrals.streams.topics import Catalogue, TopicSpec


def offline_runtime(processor: Processor, codec: Any, spec: TopicSpec) -> StreamRuntime:
    return StreamRuntime(
        processor,
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),  # never connected here
        settings=ServiceSettings(),
        codec=codec,
        catalogue=Catalogue([spec]),
        metrics=RuntimeMetrics(processor.name),
        health=Health(),
    )
