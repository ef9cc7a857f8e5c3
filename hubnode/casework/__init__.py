"""The pathway actions of one hub: log an enquiry, record consent, refer, move a referral
along, follow up, advocacy, erase — and read a person where this hub holds their key.

One copy of the rules for every caller: the ``hubnode`` commands (one action per process),
``hubnode demo`` and the staff console (many actions over one open hub). An action checks
what the views would ignore or the person did not agree to, seals personal fields before
they leave this process, appends, and returns a small result (:mod:`.results`). It refuses
with a :class:`~hubnode.errors.HubnodeError` that says what is wrong and how to fix it
(:mod:`.inputs`); nothing is printed here. Messages name the command-line options
(``--reason``), as the commands print them unchanged; :attr:`InvalidInput.field` names the
field for a form.

A :class:`Casework` works over an open :class:`~hubnode.store.log.EventLog` (with the
signing key), the hub's :class:`~hubnode.privacy.keyring.Keyring` and its
:class:`~hubnode.projections.runner.ProjectionRunner`. Each action first brings the
keyring and then the views up to date with the log (:meth:`Casework.refresh`), so a
long-running caller sees what gossip brought in since its last action. See
docs/pathway.md and docs/privacy.md.

    async with Casework.open(folder) as cw:
        logged = await cw.log_enquiry(name="Ada", needs=["debt"], channel="walk-in",
                                      consent=[other_hub])
        made = await cw.refer(logged.subject, to_hub=other_hub, note="mornings only")
"""

from hubnode.casework.actions import Casework, consent_command, new_id
from hubnode.casework.inputs import (
    DEFAULT_PURPOSES,
    InvalidInput,
    NoCapacity,
    NotFound,
    NotPermitted,
    SeveralOwners,
    check_clear_text,
)
from hubnode.casework.reading import CaseReader
from hubnode.casework.results import (
    CaseClosed,
    CaseDetail,
    CaseOpened,
    Claimed,
    ConsentSaved,
    Erased,
    FollowedUp,
    Logged,
    Moved,
    PersonRecord,
    ReferralDetail,
    Referred,
    RefKey,
)

__all__ = [
    "DEFAULT_PURPOSES",
    "CaseClosed",
    "CaseDetail",
    "CaseOpened",
    "CaseReader",
    "Casework",
    "Claimed",
    "ConsentSaved",
    "Erased",
    "FollowedUp",
    "InvalidInput",
    "Logged",
    "Moved",
    "NoCapacity",
    "NotFound",
    "NotPermitted",
    "PersonRecord",
    "RefKey",
    "ReferralDetail",
    "Referred",
    "SeveralOwners",
    "check_clear_text",
    "consent_command",
    "new_id",
]
