"""`python -m referrals.programs.schema > schemas/program.schema.json` regenerates the schema."""

import sys

from referrals.programs.schema import json_schema_text

sys.stdout.write(json_schema_text())
