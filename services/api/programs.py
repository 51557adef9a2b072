"""`Programs`: marketing's program documents, through `referrals program validate|put`'s code
(`referrals.programs.document.validate`, `referrals.programs.put.put`), so the API and the
command line accept and publish exactly the same documents. GetProgram and ListPrograms read
`programs.config.v1`: each program's latest published version."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from referrals.contract.avro import AvroCodec
from referrals.contract.records import ProgramConfig
from referrals.contract.topics import PROGRAMS
from referrals.platform.settings import KafkaSettings
from referrals.programs.document import ProgramInvalid, parse_document, validate
from referrals.programs.model import ProgramDocument
from referrals.programs.put import put
from referrals.streams.reading import TopicReadError, read_records
from services.api.auth import current_caller
from services.api.convert import program
from services.api.errors import abort, bad_request
from services.api.proto import referrals_pb2 as pb
from services.api.proto import referrals_pb2_grpc as rpc

SOURCE = "document"  # where a document's unreadable text is reported


def check(document: str) -> ProgramDocument:
    """The typed document, or ProgramInvalid listing every problem (as `program validate`)."""
    return validate(parse_document(document, source=SOURCE))


def latest(messages: list[Any], codec: AvroCodec) -> dict[str, ProgramConfig]:
    """program_id -> its highest published version (records that do not decode are skipped)."""
    out: dict[str, ProgramConfig] = {}
    for msg in messages:
        if msg.value is None:
            continue
        try:
            config = codec.decode(msg.value, "ProgramConfig")
        except Exception:  # a DecodeError: bad input sits in topics too
            continue
        if isinstance(config, ProgramConfig):
            known = out.get(config.program_id)
            if known is None or config.version > known.version:
                out[config.program_id] = config
    return out


class ProgramsService(rpc.ProgramsServicer):
    def __init__(self, kafka: KafkaSettings, codec: AvroCodec | None = None) -> None:
        self.kafka = kafka
        self.codec = codec or AvroCodec()

    async def ValidateProgram(
        self, request: pb.ValidateProgramRequest, context: grpc.aio.ServicerContext
    ) -> pb.ValidateProgramResponse:
        try:  # templates render in the check (up to their time limit): off the event loop
            await asyncio.to_thread(check, request.document)
        except ProgramInvalid as invalid:
            return pb.ValidateProgramResponse(
                violations=[pb.Violation(path=p, message=m) for p, m in invalid.problems]
            )
        return pb.ValidateProgramResponse()

    async def PutProgram(
        self, request: pb.PutProgramRequest, context: grpc.aio.ServicerContext
    ) -> pb.PutProgramResponse:
        try:
            doc = await asyncio.to_thread(check, request.document)
        except ProgramInvalid as invalid:
            await bad_request(context, "the program document is invalid", invalid.problems)
        caller = current_caller()
        config = await put(self.kafka, doc, caller.identity() or caller.token)
        return pb.PutProgramResponse(program_id=config.program_id, version=config.version)

    async def GetProgram(
        self, request: pb.GetProgramRequest, context: grpc.aio.ServicerContext
    ) -> pb.Program:
        if not request.program_id:
            await bad_request(context, "program_id is required", [("program_id", "is empty")])
        found = latest(await self._read(context, request.program_id), self.codec)
        config = found.get(request.program_id)
        if config is None:
            await abort(
                context, grpc.StatusCode.NOT_FOUND, f"no program {request.program_id!r} was put"
            )
        return program(config)

    async def ListPrograms(
        self, request: pb.ListProgramsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProgramsResponse:
        found = latest(await self._read(context), self.codec)
        return pb.ListProgramsResponse(programs=[program(found[k]) for k in sorted(found)])

    async def _read(self, context: grpc.aio.ServicerContext, key: str | None = None) -> list[Any]:
        try:
            return await read_records(self.kafka, PROGRAMS, key=key, client_id="referrals-api")
        except TopicReadError as err:
            await abort(context, grpc.StatusCode.UNAVAILABLE, str(err))
