"""The public contract (`CONTRACT.md`): the schema registry and Avro codec, typed records, the
topic catalogue with its key rules, input validation, and publishing validated records."""
