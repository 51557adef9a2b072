"""Program configs as every service sees them: the newest valid version of each program.

`programs.config.v1` is a compacted global topic; each service instance reads it whole before
processing inputs and follows it afterwards, so a new version takes effect without a restart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from referrals.contract.records import ProgramConfig, Record
from referrals.contract.topics import PROGRAMS
from referrals.platform.errors import ConfigError, InvalidRecord
from referrals.platform.metrics import RuntimeMetrics
from referrals.programs.document import from_canonical
from referrals.programs.model import ProgramDocument
from referrals.streams.processor import Processor


@dataclass(frozen=True, slots=True)
class Program:
    program_id: str
    version: int
    document: ProgramDocument


class ProgramCatalog:
    """The newest valid version of each program, as typed documents."""

    def __init__(self) -> None:
        self._programs: dict[str, Program] = {}

    def apply(self, config: ProgramConfig) -> Program:
        """Keeps `config` unless a newer version is already known; returns the one in force.

        A document that fails its checksum or validation is bad input (it goes to the DLQ);
        the version in force stays in force.
        """
        digest = hashlib.sha256(config.document.encode("utf-8")).hexdigest()
        if digest != config.document_sha256:
            raise InvalidRecord(
                "does not match the document's SHA-256",
                reason="BAD_PROGRAM_DOCUMENT",
                field="document_sha256",
            )
        current = self._programs.get(config.program_id)
        if current is not None and current.version >= config.version:
            return current
        try:
            document = from_canonical(config.document)
        except ConfigError as err:
            raise InvalidRecord(str(err), reason="BAD_PROGRAM_DOCUMENT", field="document") from err
        if document.program_id != config.program_id:
            raise InvalidRecord(
                f"names program {document.program_id!r}, the record {config.program_id!r}",
                reason="BAD_PROGRAM_DOCUMENT",
                field="document",
            )
        program = Program(config.program_id, config.version, document)
        self._programs[config.program_id] = program
        return program

    def get(self, program_id: str) -> Program | None:
        return self._programs.get(program_id)

    def __len__(self) -> int:
        return len(self._programs)


class ProgramAwareProcessor(Processor):
    """A processor that follows `programs.config.v1` into a ProgramCatalog."""

    globals = (PROGRAMS,)

    def __init__(self, metrics: RuntimeMetrics) -> None:
        self.programs = ProgramCatalog()
        self.metrics = metrics

    def on_global(self, topic: str, key: str | None, record: Record) -> None:
        if isinstance(record, ProgramConfig):
            program = self.programs.apply(record)
            self.metrics.programs.set(len(self.programs))
            self.metrics.program_version.labels(program.program_id).set(program.version)
