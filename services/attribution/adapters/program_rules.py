"""Marketing's program document -> the attribution core's `Rules`, once per program version.

The catalogue (`referrals.programs.catalog`) holds validated, typed documents; this module only
translates their `attribution` section (and version and status) into the core's terms. The
adapter and `referrals program preview` both call it, so a preview decides with the same rules.
"""

from __future__ import annotations

from referrals.programs.catalog import Program
from referrals.programs.model import ProgramStatus
from services.attribution.domain.model import Policy, Rules


def rules_for(program: Program) -> Rules:
    """The attribution rules a program version defines: window, policy, and whether it ended."""
    window = program.document.attribution
    ended = program.document.status is ProgramStatus.ENDED
    policy = Policy(window.policy.value)
    return Rules(program.program_id, program.version, window.window_days, policy, ended)
